package s3

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// Config says which bucket and prefix hold the blobs and how to reach them. Credentials are not
// part of it: they come from the standard AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY,
// shared config files, web identity, instance roles…) so they never appear in a flag or a log.
type Config struct {
	Bucket string
	// Prefix is prepended to every key, without leading or trailing slash ("" for none).
	Prefix string
	// Endpoint is the S3 base URL (http or https); empty means AWS itself.
	Endpoint string
	// Region is the signing region; empty means the AWS chain's (AWS_REGION…), else us-east-1.
	Region string
	// PathStyle addresses the bucket as endpoint/bucket instead of bucket.endpoint, as MinIO,
	// versitygw and most other S3 servers without wildcard DNS need.
	PathStyle bool
	// PartSize is the size of one multipart part and of the write buffer (0: DefaultPartSize).
	PartSize int64
}

// String renders the configuration as the URL ParseURL reads (it holds no secrets).
func (c Config) String() string {
	u := url.URL{Scheme: "s3", Host: c.Bucket}
	if c.Prefix != "" {
		u.Path = "/" + c.Prefix
	}
	q := url.Values{}
	if c.Endpoint != "" {
		q.Set("endpoint", c.Endpoint)
	}
	if c.Region != "" {
		q.Set("region", c.Region)
	}
	if c.PathStyle {
		q.Set("path-style", "true")
	}
	if c.PartSize != 0 {
		q.Set("part-size", strconv.FormatInt(c.PartSize, 10))
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// bucketName follows the S3 naming rules loosely (lowercase letters, digits, dots and hyphens,
// 3–63 characters, starting and ending with a letter or digit); the server has the last word.
var bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// ParseURL reads the --blob-store form (contract):
//
//	s3://BUCKET[/PREFIX]?endpoint=URL&region=R&path-style=true
//
// part-size=BYTES is accepted too. Unknown parameters and credentials in the URL are errors, so
// a typo never silently falls back to a default.
func ParseURL(raw string) (Config, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, fmt.Errorf("s3 blob store URL: %w", err)
	}
	if u.Scheme != "s3" {
		return Config{}, fmt.Errorf("s3 blob store URL %q: scheme must be s3", redact(u))
	}
	if u.User != nil {
		return Config{}, fmt.Errorf("s3 blob store URL %q: credentials do not belong in the URL; use AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", redact(u))
	}
	if u.Opaque != "" || u.Fragment != "" {
		return Config{}, fmt.Errorf("s3 blob store URL %q: want s3://BUCKET[/PREFIX]", raw)
	}
	if u.Port() != "" || !bucketName.MatchString(u.Host) {
		return Config{}, fmt.Errorf("s3 blob store URL %q: %q is not a valid bucket name", raw, u.Host)
	}
	c := Config{Bucket: u.Host, Prefix: strings.Trim(u.Path, "/")}
	if err := checkPrefix(c.Prefix); err != nil {
		return Config{}, fmt.Errorf("s3 blob store URL %q: %w", raw, err)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Config{}, fmt.Errorf("s3 blob store URL %q: query: %w", raw, err)
	}
	for name, values := range q {
		if len(values) != 1 {
			return Config{}, fmt.Errorf("s3 blob store URL %q: %s given %d times", raw, name, len(values))
		}
		v := values[0]
		switch name {
		case "endpoint":
			e, err := url.Parse(v)
			if err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" {
				return Config{}, fmt.Errorf("s3 blob store URL %q: endpoint %q must be an http:// or https:// URL", raw, v)
			}
			c.Endpoint = v
		case "region":
			if v == "" {
				return Config{}, fmt.Errorf("s3 blob store URL %q: empty region", raw)
			}
			c.Region = v
		case "path-style":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return Config{}, fmt.Errorf("s3 blob store URL %q: path-style=%q is not a boolean", raw, v)
			}
			c.PathStyle = b
		case "part-size":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n < MinPartSize || n > MaxPartSize {
				return Config{}, fmt.Errorf("s3 blob store URL %q: part-size=%q must be a number of bytes between %d and %d", raw, v, MinPartSize, MaxPartSize)
			}
			c.PartSize = n
		default:
			return Config{}, fmt.Errorf("s3 blob store URL %q: unknown parameter %q (known: endpoint, region, path-style, part-size)", raw, name)
		}
	}
	return c, nil
}

func checkPrefix(p string) error {
	if p == "" {
		return nil
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return errors.New("the prefix must not contain empty, . or .. segments")
		}
	}
	return nil
}

// redact drops the user info entirely: even an access key ID does not belong in an error.
func redact(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}
