// Package s3 keeps blobs in an S3 bucket (AWS, MinIO, versitygw, …), content-addressed:
//
//	PREFIX/blobs/sha256/ab/abcdef…          one object per digest
//	PREFIX/uploads/abcdef…/<random>         empty marker: a writer's multipart upload is open
//
// Writes stream as a multipart upload whose parts are sent while the next one fills, so a blob
// is never held in memory whole; the object appears only when the upload is completed (Commit),
// which S3 makes atomic. An upload left behind by a process that died is invisible; its marker
// lets CleanupAbandoned find and abort it.
package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/hubcache/hubcache/proxy/blobstore"
)

const (
	// DefaultPartSize bounds the memory of one write: at most two parts (one filling, one
	// uploading) are held at a time.
	DefaultPartSize = 8 << 20
	// MinPartSize is S3's smallest allowed part (except the last one).
	MinPartSize = 5 << 20
	// MaxPartSize is S3's largest allowed part.
	MaxPartSize = 5 << 30
	// maxParts is S3's limit on the parts of one upload.
	maxParts = 10000
	// partsPerSize is how many parts are sent before the part size doubles, so that objects
	// far beyond 10000 × PartSize still fit (8 MiB parts: about 8 TiB).
	partsPerSize = 1000
	// DefaultRegion is used when neither the URL nor the AWS chain names one (MinIO's default).
	DefaultRegion = "us-east-1"
	// maxPresignTTL is the longest validity SigV4 allows for a presigned URL.
	maxPresignTTL = 7 * 24 * time.Hour
)

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// Store keeps objects in one bucket under one prefix.
type Store struct {
	client   *s3.Client
	presign  *s3.PresignClient
	bucket   string
	prefix   string // "" or ends with "/"
	partSize int64
	logger   *slog.Logger
	now      func() time.Time
	creds    aws.CredentialsProvider
}

var _ blobstore.Store = (*Store)(nil)

// Option configures a Store.
type Option func(*Store)

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Store) { s.logger = l } }

// WithStaticCredentials replaces the AWS credential chain with a fixed key pair (tests, or
// callers that read credentials from their own secret store).
func WithStaticCredentials(accessKeyID, secretAccessKey string) Option {
	return func(s *Store) {
		s.creds = credentials.NewStaticCredentialsProvider(accessKeyID, secretAccessKey, "")
	}
}

// WithClock sets the clock CleanupAbandoned compares upload ages with (default time.Now).
func WithClock(now func() time.Time) Option { return func(s *Store) { s.now = now } }

// New builds a store for cfg. It does not contact S3, so a proxy can start while S3 is down and
// recover without a restart; Check reports reachability.
func New(ctx context.Context, cfg Config, opts ...Option) (*Store, error) {
	if !bucketName.MatchString(cfg.Bucket) {
		return nil, fmt.Errorf("s3 blob store: %q is not a valid bucket name", cfg.Bucket)
	}
	prefix := ""
	if p := strings.Trim(cfg.Prefix, "/"); p != "" {
		if err := checkPrefix(p); err != nil {
			return nil, fmt.Errorf("s3 blob store: prefix %q: %w", cfg.Prefix, err)
		}
		prefix = p + "/"
	}
	partSize := cfg.PartSize
	if partSize == 0 {
		partSize = DefaultPartSize
	}
	if partSize < MinPartSize || partSize > MaxPartSize {
		return nil, fmt.Errorf("s3 blob store: part size %d must be between %d and %d", partSize, MinPartSize, MaxPartSize)
	}
	s := &Store{
		bucket:   cfg.Bucket,
		prefix:   prefix,
		partSize: partSize,
		logger:   slog.Default(),
		now:      time.Now,
	}
	for _, o := range opts {
		o(s)
	}

	var loadOpts []func(*config.LoadOptions) error
	if cfg.Region != "" {
		loadOpts = append(loadOpts, config.WithRegion(cfg.Region))
	}
	if s.creds != nil {
		loadOpts = append(loadOpts, config.WithCredentialsProvider(s.creds))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, loadOpts...)
	if err != nil {
		return nil, fmt.Errorf("s3 blob store: load AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = DefaultRegion
	}
	s.client = s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		// The SDK's default adds CRC32 trailers to every upload, which needs an
		// aws-chunked body that many S3 servers reject, and validates checksums on reads that
		// servers may not send. Parts are signed with their SHA-256 (plain http) or protected
		// by TLS, and the cache verifies every blob's digest itself.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	s.presign = s3.NewPresignClient(s.client)
	return s, nil
}

// Check reports whether the bucket is reachable with the configured credentials (for /readyz).
func (s *Store) Check(ctx context.Context) error {
	if _, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(s.bucket)}); err != nil {
		return fmt.Errorf("s3 blob store: bucket %s: %w", s.bucket, err)
	}
	return nil
}

// key returns the object key of d, rejecting anything but a well-formed sha256 digest so that
// no input can address a key outside the prefix.
func (s *Store) key(d v1.Hash) (string, error) {
	if d.Algorithm != "sha256" || !sha256Hex.MatchString(d.Hex) {
		return "", fmt.Errorf("s3 blob store: %q: %w", d.String(), blobstore.ErrInvalidDigest)
	}
	return s.prefix + "blobs/sha256/" + d.Hex[:2] + "/" + d.Hex, nil
}

// Stat returns the size of the committed object, or ErrNotFound.
func (s *Store) Stat(ctx context.Context, d v1.Hash) (int64, error) {
	key, err := s.key(d)
	if err != nil {
		return 0, err
	}
	out, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil {
		if isNotFound(err) {
			return 0, fmt.Errorf("s3 blob store: %s: %w", d, blobstore.ErrNotFound)
		}
		return 0, fmt.Errorf("s3 blob store: head %s: %w", key, err)
	}
	return aws.ToInt64(out.ContentLength), nil
}

// Open reads length bytes from offset (length < 0: to the end) with one ranged GET.
func (s *Store) Open(ctx context.Context, d v1.Hash, offset, length int64) (io.ReadCloser, error) {
	key, err := s.key(d)
	if err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, fmt.Errorf("s3 blob store: negative offset %d", offset)
	}
	if length == 0 {
		// HTTP cannot ask for zero bytes; the object must still exist.
		if _, err := s.Stat(ctx, d); err != nil {
			return nil, err
		}
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	in := &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)}
	switch {
	case length > 0 && length <= math.MaxInt64-offset:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-%d", offset, offset+length-1))
	case offset > 0:
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", offset))
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("s3 blob store: %s: %w", d, blobstore.ErrNotFound)
		}
		if isInvalidRange(err) {
			// 416: the range starts at or past the end. That is an empty read, not an error,
			// as long as the object exists.
			size, serr := s.Stat(ctx, d)
			if serr != nil {
				return nil, serr
			}
			if offset >= size {
				return io.NopCloser(bytes.NewReader(nil)), nil
			}
		}
		return nil, fmt.Errorf("s3 blob store: get %s: %w", key, err)
	}
	if in.Range != nil && out.ContentRange == nil {
		// The server ignored Range and sent the whole object: cut the range out ourselves.
		return skipLimit(out.Body, offset, length)
	}
	body := &objectBody{ReadCloser: out.Body}
	if out.ETag != nil && out.LastModified != nil {
		body.version = aws.ToString(out.VersionId) + ":" + *out.ETag + ":" + out.LastModified.UTC().Format(time.RFC3339Nano)
		body.changed = *out.LastModified
	}
	return body, nil
}

// objectBody is an object's body that names the object's version. A GET's body is one
// version of the object, whatever happens to the object meanwhile.
type objectBody struct {
	io.ReadCloser
	version string
	changed time.Time
}

// Version is the object's version ID (on a versioned bucket), ETag and Last-Modified, as the
// GET returned them: overwriting the object moves Last-Modified, and its ETag unless the
// bytes are the same.
func (b *objectBody) Version() (string, time.Time) { return b.version, b.changed }

// Delete removes the object; a missing object is not an error.
func (s *Store) Delete(ctx context.Context, d v1.Hash) error {
	key, err := s.key(d)
	if err != nil {
		return err
	}
	_, err = s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)})
	if err != nil && !isNotFound(err) {
		return fmt.Errorf("s3 blob store: delete %s: %w", key, err)
	}
	return nil
}

// PresignGet returns a URL that reads the object directly from S3 for ttl, for clients that
// reach S3 themselves (the HTTP layer redirects to it). It does not check that the object
// exists: callers Stat first.
func (s *Store) PresignGet(ctx context.Context, d v1.Hash, ttl time.Duration) (string, error) {
	key, err := s.key(d)
	if err != nil {
		return "", err
	}
	if ttl <= 0 || ttl > maxPresignTTL {
		return "", fmt.Errorf("s3 blob store: presign validity %s must be positive and at most %s", ttl, maxPresignTTL)
	}
	req, err := s.presign.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(key)},
		s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("s3 blob store: presign %s: %w", key, err)
	}
	return req.URL, nil
}

// markerKey names a fresh upload marker for the object with hex digest h.
func (s *Store) markerKey(h string) string {
	var token [8]byte
	_, _ = rand.Read(token[:]) // crypto/rand.Read never fails
	return s.prefix + "uploads/" + h + "/" + hex.EncodeToString(token[:])
}

// CleanupAbandoned aborts the multipart uploads under the prefix that started more than
// olderThan ago: those of writers whose process died mid-fill. olderThan must exceed the
// longest legitimate fill, since an aborted upload fails its writer's Commit. It returns how
// many uploads it aborted; several replicas may run it at once.
//
// Uploads are found two ways: through the markers every writer puts under PREFIX/uploads/
// before it starts an upload (MinIO lists uploads only for an exact key), and by listing
// uploads under PREFIX/blobs/ (AWS and versitygw), which also catches uploads without a marker.
func (s *Store) CleanupAbandoned(ctx context.Context, olderThan time.Duration) (int, error) {
	cutoff := s.now().Add(-olderThan)
	aborted := map[string]bool{} // upload IDs
	markers := &s3.ListObjectsV2Input{Bucket: aws.String(s.bucket), Prefix: aws.String(s.prefix + "uploads/")}
	for {
		out, err := s.client.ListObjectsV2(ctx, markers)
		if err != nil {
			return len(aborted), fmt.Errorf("s3 blob store: list upload markers: %w", err)
		}
		for _, m := range out.Contents {
			if m.LastModified == nil || !m.LastModified.Before(cutoff) {
				continue
			}
			marker := aws.ToString(m.Key)
			h, _, _ := strings.Cut(strings.TrimPrefix(marker, s.prefix+"uploads/"), "/")
			key, err := s.key(v1.Hash{Algorithm: "sha256", Hex: h})
			if err != nil {
				s.logger.WarnContext(ctx, "ignoring a malformed upload marker", "key", marker)
				continue
			}
			// Uploads of the same key by live writers are younger than the cutoff and stay.
			if err := s.abortUploads(ctx, key, cutoff, aborted); err != nil {
				return len(aborted), err
			}
			_, err = s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(marker)})
			if err != nil && !isNotFound(err) {
				return len(aborted), fmt.Errorf("s3 blob store: delete upload marker %s: %w", marker, err)
			}
		}
		if !aws.ToBool(out.IsTruncated) || aws.ToString(out.NextContinuationToken) == "" {
			break
		}
		markers.ContinuationToken = out.NextContinuationToken
	}
	if err := s.abortUploads(ctx, s.prefix+"blobs/", cutoff, aborted); err != nil {
		return len(aborted), err
	}
	return len(aborted), nil
}

// abortUploads aborts the uploads whose key starts with prefix and that started before
// cutoff, recording their IDs in aborted.
func (s *Store) abortUploads(ctx context.Context, prefix string, cutoff time.Time, aborted map[string]bool) error {
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(s.bucket), Prefix: aws.String(prefix)}
	for {
		out, err := s.client.ListMultipartUploads(ctx, in)
		if err != nil {
			return fmt.Errorf("s3 blob store: list multipart uploads under %s: %w", prefix, err)
		}
		for _, u := range out.Uploads {
			id := aws.ToString(u.UploadId)
			if aborted[id] || u.Initiated == nil || !u.Initiated.Before(cutoff) {
				continue
			}
			_, err := s.client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
				Bucket: aws.String(s.bucket), Key: u.Key, UploadId: u.UploadId,
			})
			if err != nil && !isNoSuchUpload(err) {
				return fmt.Errorf("s3 blob store: abort upload of %s: %w", aws.ToString(u.Key), err)
			}
			if err == nil {
				aborted[id] = true
				s.logger.InfoContext(ctx, "aborted an abandoned multipart upload",
					"key", aws.ToString(u.Key), "initiated", u.Initiated.UTC())
			}
		}
		if !aws.ToBool(out.IsTruncated) {
			return nil
		}
		if aws.ToString(out.NextKeyMarker) == "" && aws.ToString(out.NextUploadIdMarker) == "" {
			return errors.New("s3 blob store: list multipart uploads: truncated listing without a marker")
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}

func isNotFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	if errors.As(err, &nsk) || errors.As(err, &nf) {
		return true
	}
	var api smithy.APIError
	if errors.As(err, &api) && (api.ErrorCode() == "NoSuchKey" || api.ErrorCode() == "NotFound") {
		return true
	}
	// HEAD responses have no body, so some servers' 404s carry no error code.
	var re *awshttp.ResponseError
	return errors.As(err, &re) && re.HTTPStatusCode() == 404 && !hasCode(err, "NoSuchBucket")
}

func isInvalidRange(err error) bool {
	var re *awshttp.ResponseError
	return hasCode(err, "InvalidRange") || (errors.As(err, &re) && re.HTTPStatusCode() == 416)
}

func isNoSuchUpload(err error) bool {
	var nsu *types.NoSuchUpload
	return errors.As(err, &nsu) || hasCode(err, "NoSuchUpload")
}

func hasCode(err error, code string) bool {
	var api smithy.APIError
	return errors.As(err, &api) && api.ErrorCode() == code
}

// skipLimit turns a whole-object body into the requested range.
func skipLimit(body io.ReadCloser, offset, length int64) (io.ReadCloser, error) {
	if _, err := io.CopyN(io.Discard, body, offset); err != nil && !errors.Is(err, io.EOF) {
		body.Close()
		return nil, fmt.Errorf("s3 blob store: skip to offset %d: %w", offset, err)
	}
	if length < 0 {
		return body, nil
	}
	return struct {
		io.Reader
		io.Closer
	}{io.LimitReader(body, length), body}, nil
}
