package upstream

import (
	"net/http"
	"testing"
	"time"
)

func TestRateLimitHeadersAreParsed(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"100;w=21600", 100, true},
		{"0;w=21600", 0, true},
		{"42", 42, true},
		{"", 0, false},
		{"lots", 0, false},
		{"-1;w=1", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseRateLimit(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseRateLimit(%q) = %d %v, want %d %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestRetryAfterReadsSecondsAndIgnoresNonsense(t *testing.T) {
	if got := retryAfter("120"); got != 2*time.Minute {
		t.Errorf("seconds: %s", got)
	}
	for _, v := range []string{"", "soon", "-5", "Mon, 01 Jan 1990 00:00:00 GMT"} {
		if got := retryAfter(v); got != 0 {
			t.Errorf("retryAfter(%q) = %s, want 0", v, got)
		}
	}
	if got := retryAfter(time.Now().Add(time.Hour).UTC().Format(http.TimeFormat)); got <= 0 {
		t.Errorf("an HTTP date an hour ahead gave %s", got)
	}
}

func TestTheTransportCacheKeepsOnlyTheMostRecent(t *testing.T) {
	c := NewTransportCache(2, 0, nil)
	a, b, d := http.DefaultTransport, &http.Transport{}, &http.Transport{}
	c.Add("a", a)
	c.Add("b", b)
	c.Get("a") // a is now the most recent, b the oldest
	c.Add("d", d)
	if _, ok := c.Get("b"); ok {
		t.Error("the least recently used entry was kept")
	}
	if _, ok := c.Get("a"); !ok {
		t.Error("a recently used entry was evicted")
	}
	if got := c.Add("a", d); got != a {
		t.Error("a second add replaced the first transport")
	}
	if c.Len() != 2 {
		t.Errorf("len %d, want 2", c.Len())
	}
	c.Remove("a")
	if _, ok := c.Get("a"); ok {
		t.Error("removed entry still there")
	}
}

func TestTheTransportCacheRebuildsEntriesOlderThanMaxAge(t *testing.T) {
	now := time.Unix(1000, 0)
	c := NewTransportCache(8, time.Minute, func() time.Time { return now })
	c.Add("a", http.DefaultTransport)
	now = now.Add(59 * time.Second)
	if _, ok := c.Get("a"); !ok {
		t.Fatal("a fresh entry was dropped")
	}
	now = now.Add(time.Second)
	if _, ok := c.Get("a"); ok {
		t.Fatal("an entry a minute old was kept")
	}
}
