package bench

import "net"

// net0 picks a free loopback port for a server started as a separate process.
type net0 struct{}

func (net0) listen() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}
