// Command benchtable renders the rows `make bench` recorded into docs/bench.md, between its
// table markers, with the machine, the date, the Go version and the commit.
//
//	go run ./test/bench/cmd/benchtable -results DIR -doc docs/bench.md
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/hubcache/hubcache/test/bench/table"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
}

func run() error {
	results := flag.String("results", os.Getenv(table.EnvResults), "folder of recorded rows")
	doc := flag.String("doc", "docs/bench.md", "document to write the table into")
	command := flag.String("command", "make bench", "command named in the table's header")
	flag.Parse()
	if *results == "" {
		return fmt.Errorf("-results or %s is required", table.EnvResults)
	}
	rows, err := table.Load(*results)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		return fmt.Errorf("no rows in %s: did the benchmarks run?", *results)
	}
	h := table.Header{
		Date:    time.Now().UTC().Format("2006-01-02"),
		Machine: machine(),
		Go:      runtime.Version(),
		Commit:  commit(),
		Command: *command,
	}
	old, err := os.ReadFile(*doc)
	if err != nil {
		return fmt.Errorf("reading %s: %w", *doc, err)
	}
	md := table.Markdown(h, rows)
	out, err := table.Splice(string(old), md)
	if err != nil {
		return fmt.Errorf("%s: %w", *doc, err)
	}
	if err := os.WriteFile(*doc, []byte(out), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", *doc, err)
	}
	fmt.Print(md)
	return nil
}

// machine names the CPU, its core count and the memory, from /proc.
func machine() string {
	cpu := "unknown CPU"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		defer f.Close()
		s := bufio.NewScanner(f)
		for s.Scan() {
			if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			mem = fmt.Sprintf(", %d GiB", (kb+(1<<19))>>20)
		}
	}
	return fmt.Sprintf("%d × %s%s", runtime.NumCPU(), cpu, mem)
}

func commit() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
