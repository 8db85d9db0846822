// Command idle waits until it is told to stop. It is the process of the pause image the test
// kubelet's containerd uses for pod sandboxes, and of the runnable images the system test
// pulls through hubcache: built static (CGO_ENABLED=0), an image needs nothing but this file.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// As PID 1 of a container, a process gets only the signals it handles.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	fmt.Printf("%s: running as pid %d\n", os.Args[0], os.Getpid())
	s := <-sig
	fmt.Printf("%s: %v, exiting\n", os.Args[0], s)
}
