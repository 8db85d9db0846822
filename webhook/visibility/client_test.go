package visibility

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/hubcache/hubcache/webhook/rewrite"
)

// stub answers as the proxy's visibility endpoint does (contract), from a fixed table.
type stub struct {
	mu      sync.Mutex
	asked   [][]string
	answers map[string]rewrite.RepositoryVisibility
	status  int
	delay   time.Duration
}

func (s *stub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != Path {
		http.NotFound(w, r)
		return
	}
	repos := r.URL.Query()["repository"]
	s.mu.Lock()
	s.asked = append(s.asked, repos)
	status, delay := s.status, s.delay
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if status != 0 {
		w.WriteHeader(status)
		return
	}
	type item struct {
		Repository string `json:"repository"`
		rewrite.RepositoryVisibility
	}
	var out struct {
		Repositories []item `json:"repositories"`
	}
	for _, r := range repos {
		a, ok := s.answers[r]
		if !ok {
			a = rewrite.RepositoryVisibility{Visibility: "unknown"}
		}
		out.Repositories = append(out.Repositories, item{r, a})
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

func (s *stub) requests() [][]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][]string(nil), s.asked...)
}

var (
	public  = rewrite.RepositoryVisibility{Visibility: "public", Served: true}
	private = rewrite.RepositoryVisibility{Visibility: "private"}
)

func newStub(t *testing.T) (*stub, *httptest.Server) {
	s := &stub{answers: map[string]rewrite.RepositoryVisibility{
		"docker.io/library/nginx": public, "docker.io/acme/billing": private,
	}}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv
}

func TestOneRequestAnswersAPodAndTheAnswersAreRemembered(t *testing.T) {
	s, srv := newStub(t)
	now := time.Unix(1000, 0)
	c, err := New(srv.URL, WithClock(func() time.Time { return now }), WithTTL(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	repos := []string{"docker.io/library/nginx", "docker.io/acme/billing"}
	got, err := c.Lookup(context.Background(), repos)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]rewrite.RepositoryVisibility{"docker.io/library/nginx": public, "docker.io/acme/billing": private}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if _, err := c.Lookup(context.Background(), repos); err != nil {
		t.Fatal(err)
	}
	if n := len(s.requests()); n != 1 {
		t.Fatalf("%d requests for two lookups within the TTL, want 1", n)
	}
	now = now.Add(2 * time.Minute)
	if _, err := c.Lookup(context.Background(), repos); err != nil {
		t.Fatal(err)
	}
	reqs := s.requests()
	if len(reqs) != 2 {
		t.Fatalf("%d requests after the TTL, want 2", len(reqs))
	}
	sort.Strings(reqs[1])
	if !reflect.DeepEqual(reqs[1], []string{"docker.io/acme/billing", "docker.io/library/nginx"}) {
		t.Errorf("second request asked %v", reqs[1])
	}
}

func TestNoAnswerInTimeLeavesTheRepositoriesUnanswered(t *testing.T) {
	s, srv := newStub(t)
	s.delay = 5 * time.Second
	c, err := New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	got, err := c.Lookup(ctx, []string{"docker.io/library/nginx"})
	if err == nil || len(got) != 0 {
		t.Fatalf("got %v, %v; want no answer and an error", got, err)
	}
	// Our own deadline is not remembered against the proxy: the next Pod asks again.
	s.mu.Lock()
	s.delay = 0
	s.mu.Unlock()
	got, err = c.Lookup(context.Background(), []string{"docker.io/library/nginx"})
	if err != nil || got["docker.io/library/nginx"] != public {
		t.Fatalf("got %v, %v after the proxy recovered", got, err)
	}
}

func TestAFailingProxyIsAskedAgainOnlyAfterTheShortTTL(t *testing.T) {
	s, srv := newStub(t)
	s.status = http.StatusServiceUnavailable
	now := time.Unix(1000, 0)
	c, err := New(srv.URL, WithClock(func() time.Time { return now }), WithUnknownTTL(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		got, _ := c.Lookup(context.Background(), []string{"docker.io/library/nginx"})
		if got["docker.io/library/nginx"].Served {
			t.Fatal("a failed request served the repository")
		}
	}
	if n := len(s.requests()); n != 1 {
		t.Fatalf("%d requests to a failing proxy within the short TTL, want 1", n)
	}
	now = now.Add(11 * time.Second)
	_, _ = c.Lookup(context.Background(), []string{"docker.io/library/nginx"})
	if n := len(s.requests()); n != 2 {
		t.Fatalf("%d requests after the short TTL, want 2", n)
	}
}

func TestTheCacheStaysBounded(t *testing.T) {
	_, srv := newStub(t)
	c, err := New(srv.URL, WithMaxEntries(3))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []string{"docker.io/a/a", "docker.io/b/b", "docker.io/c/c", "docker.io/d/d", "docker.io/e/e"} {
		_, _ = c.Lookup(context.Background(), []string{r})
	}
	c.mu.Lock()
	n := len(c.cache)
	c.mu.Unlock()
	if n > 3 {
		t.Fatalf("%d entries, want at most 3", n)
	}
}

func TestAtMost64RepositoriesAreAskedInOneRequest(t *testing.T) {
	s, srv := newStub(t)
	c, err := New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	var repos []string
	for i := range 70 {
		repos = append(repos, "docker.io/team/app"+string(rune('a'+i%26))+string(rune('a'+i/26)))
	}
	_, _ = c.Lookup(context.Background(), repos)
	reqs := s.requests()
	if len(reqs) != 1 || len(reqs[0]) != MaxRepositories {
		t.Fatalf("requests %d with %d repositories, want 1 with %d", len(reqs), len(reqs[0]), MaxRepositories)
	}
}

func TestNewRejectsABadURL(t *testing.T) {
	for _, u := range []string{"", "hubcache:5000", "ftp://x", "http://x/?a=b"} {
		if _, err := New(u); err == nil {
			t.Errorf("New(%q) accepted", u)
		}
	}
}
