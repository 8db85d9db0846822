package system

import (
	"io"
	"net"
	"sync"
	"testing"
)

// service stands in for the proxy's Kubernetes Service: a TCP listener on loopback that hands
// each connection to the next backend in turn, as kube-proxy does. A connection whose backend
// does not answer is closed, like a Service without ready endpoints.
type service struct {
	ln       net.Listener
	backends []string

	mu   sync.Mutex
	next int
	wg   sync.WaitGroup
}

func startService(t *testing.T, backends ...string) *service {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &service{ln: ln, backends: backends}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(func() {
		ln.Close()
		s.wg.Wait()
	})
	return s
}

// URL is the Service's address as the node entry point's --proxy.
func (s *service) URL() string { return "http://" + s.ln.Addr().String() }

func (s *service) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		backend := s.backends[s.next%len(s.backends)]
		s.next++
		s.mu.Unlock()
		// A relay ends when either side closes: at the latest when the test stops the
		// processes on both ends.
		go s.relay(conn, backend)
	}
}

func (s *service) relay(client net.Conn, backend string) {
	defer client.Close()
	up, err := net.Dial("tcp", backend)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, client); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, up); done <- struct{}{} }()
	// When either side ends, end both.
	<-done
}
