package egress_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"testing"

	"github.com/hubcache/hubcache/proxy/egress"
)

func TestWhichAddressesArePublic(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		public bool
	}{
		{"8.8.8.8", true},
		{"2606:4700::1111", true},
		{"127.0.0.1", false},
		{"::1", false},
		{"10.1.2.3", false},
		{"172.16.0.1", false},
		{"192.168.1.1", false},
		{"169.254.169.254", false},
		{"100.64.0.1", false},
		{"fd00::1", false},
		{"fe80::1", false},
		{"0.0.0.0", false},
		{"::ffff:127.0.0.1", false},
	} {
		if got := egress.Public(netip.MustParseAddr(tc.addr)); got != tc.public {
			t.Errorf("Public(%s) = %v, want %v", tc.addr, got, tc.public)
		}
	}
}

func TestRedirectsMustBeHTTPSToPublicAddresses(t *testing.T) {
	g := egress.New(nil)
	for _, tc := range []struct {
		to string
		ok bool
	}{
		{"https://cdn.example.com/blob", true},
		{"http://cdn.example.com/blob", false},
		{"https://127.0.0.1/blob", false},
		{"https://[::1]/blob", false},
		{"https://169.254.169.254/latest/meta-data", false},
		{"https://10.0.0.1/blob", false},
	} {
		u, _ := url.Parse(tc.to)
		err := g.CheckRedirect(&http.Request{URL: u}, []*http.Request{{}})
		if (err == nil) != tc.ok {
			t.Errorf("redirect to %s: error %v, want allowed=%v", tc.to, err, tc.ok)
		}
	}
}

func TestANameThatResolvesToLoopbackIsRefusedAtDialTime(t *testing.T) {
	trusted, _ := url.Parse("https://registry.example:443")
	g := egress.New([]*url.URL{trusted})
	dialed := ""
	dial := g.DialContext(func(_ context.Context, _, addr string) (net.Conn, error) {
		dialed = addr
		return nil, errors.New("stop here")
	})
	if _, err := dial(context.Background(), "tcp", "localhost:443"); !errors.Is(err, egress.ErrForbidden) {
		t.Fatalf("dial localhost: %v, want ErrForbidden", err)
	}
	if dialed != "" {
		t.Fatalf("dialed %s", dialed)
	}
	// A configured upstream is dialed as written.
	_, _ = dial(context.Background(), "tcp", "registry.example:443")
	if dialed != "registry.example:443" {
		t.Fatalf("the trusted upstream was not dialed as given: %q", dialed)
	}
}
