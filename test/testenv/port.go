package testenv

import (
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
)

// Ports handed out by FreeAddr lie below Linux's ephemeral range (32768–60999 by default).
// A port taken with 127.0.0.1:0 and released for a server to bind later can be grabbed in
// between by any outgoing connection or :0 listener of the tests running in parallel; a port
// in this range cannot be, because the kernel never picks one from here by itself.
const (
	portLow  = 20000
	portHigh = 32768
)

// FreeAddr returns a 127.0.0.1:PORT that a server started by the test can bind: a port below
// the ephemeral range that is free now.
func FreeAddr(t testing.TB) string {
	t.Helper()
	for range 200 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(portLow+rand.IntN(portHigh-portLow)))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		return addr
	}
	t.Fatalf("no free port in %d-%d on 127.0.0.1", portLow, portHigh-1)
	return ""
}

// FreePort is FreeAddr's port.
func FreePort(t testing.TB) int {
	t.Helper()
	_, p, _ := net.SplitHostPort(FreeAddr(t))
	n, _ := strconv.Atoi(p)
	return n
}
