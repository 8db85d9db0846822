package verify_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/verify"
)

func digest(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

func TestOnVerifiedRunsOnceWhenTheBytesMatch(t *testing.T) {
	body := bytes.Repeat([]byte("layer"), 10_000)
	for _, size := range []int64{int64(len(body)), -1} {
		verified, mismatched := 0, 0
		r := verify.NewReader(io.NopCloser(bytes.NewReader(body)), digest(body), size, func(error) { mismatched++ }).
			OnVerified(func() { verified++ })
		got, err := io.ReadAll(r)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("size %d: %d bytes, %v", size, len(got), err)
		}
		if verified != 1 || mismatched != 0 {
			t.Fatalf("size %d: verified %d times, mismatched %d; want 1 and 0", size, verified, mismatched)
		}
	}
}

func TestOnVerifiedDoesNotRunWhenTheBytesDiffer(t *testing.T) {
	body := bytes.Repeat([]byte("layer"), 10_000)
	damaged := bytes.Clone(body)
	damaged[len(damaged)/2] ^= 0xff
	verified, mismatched := 0, 0
	r := verify.NewReader(io.NopCloser(bytes.NewReader(damaged)), digest(body), int64(len(body)), func(error) { mismatched++ }).
		OnVerified(func() { verified++ })
	got, err := io.ReadAll(r)
	if !errors.Is(err, verify.ErrMismatch) || len(got) >= len(body) {
		t.Fatalf("read %d of %d bytes, err %v; want the last bytes withheld and ErrMismatch", len(got), len(body), err)
	}
	if verified != 0 || mismatched != 1 {
		t.Fatalf("verified %d times, mismatched %d; want 0 and 1", verified, mismatched)
	}
}
