package containerd

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtime "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Images is a CRI ImageService client, the interface the kubelet pulls images through.
type Images struct {
	client runtime.ImageServiceClient
}

// Images connects a CRI ImageService client to the daemon; the connection closes when the
// test ends.
func (d *Daemon) Images(t testing.TB) *Images {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+d.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("CRI client for %s: %v", d.Socket, err)
	}
	t.Cleanup(func() { conn.Close() })
	return &Images{client: runtime.NewImageServiceClient(conn)}
}

// PullImage pulls ref as the kubelet does (no credentials, no sandbox) and returns the image
// reference containerd answers with: the image ID, the digest of the image's config.
func (i *Images) PullImage(ctx context.Context, ref string) (string, error) {
	ctx, cancel := callContext(ctx)
	defer cancel()
	resp, err := i.client.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}})
	if err != nil {
		return "", fmt.Errorf("CRI PullImage %s: %w", ref, err)
	}
	return resp.GetImageRef(), nil
}

// ImageStatus returns what containerd knows of ref (its ID, repo tags and repo digests), or
// nil when it has no such image.
func (i *Images) ImageStatus(ctx context.Context, ref string) (*runtime.Image, error) {
	ctx, cancel := callContext(ctx)
	defer cancel()
	resp, err := i.client.ImageStatus(ctx, &runtime.ImageStatusRequest{Image: &runtime.ImageSpec{Image: ref}})
	if err != nil {
		return nil, fmt.Errorf("CRI ImageStatus %s: %w", ref, err)
	}
	return resp.GetImage(), nil
}

// RemoveImage deletes ref from containerd, so the next pull has to fetch it again.
func (i *Images) RemoveImage(ctx context.Context, ref string) error {
	ctx, cancel := callContext(ctx)
	defer cancel()
	if _, err := i.client.RemoveImage(ctx, &runtime.RemoveImageRequest{Image: &runtime.ImageSpec{Image: ref}}); err != nil {
		return fmt.Errorf("CRI RemoveImage %s: %w", ref, err)
	}
	return nil
}

// PullImageWithAuth pulls ref with the credentials the kubelet passes from a Pod's
// imagePullSecrets for ref's registry (CRI AuthConfig); containerd sends them only to that
// registry.
func (i *Images) PullImageWithAuth(ctx context.Context, ref string, auth *runtime.AuthConfig) (string, error) {
	ctx, cancel := callContext(ctx)
	defer cancel()
	resp, err := i.client.PullImage(ctx, &runtime.PullImageRequest{Image: &runtime.ImageSpec{Image: ref}, Auth: auth})
	if err != nil {
		return "", fmt.Errorf("CRI PullImage %s (with credentials): %w", ref, err)
	}
	return resp.GetImageRef(), nil
}

// Runtime connects a CRI RuntimeService client (pods and containers) to the daemon; the
// connection closes when the test ends.
func (d *Daemon) Runtime(t testing.TB) runtime.RuntimeServiceClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+d.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("CRI client for %s: %v", d.Socket, err)
	}
	t.Cleanup(func() { conn.Close() })
	return runtime.NewRuntimeServiceClient(conn)
}

// removePods stops and removes every pod sandbox (and so every container): a kubelet that
// stops leaves its pods running, and containerd's shims outlive the daemon.
func (d *Daemon) removePods() error {
	conn, err := grpc.NewClient("unix://"+d.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtime.NewRuntimeServiceClient(conn)
	ctx, cancel := callContext(context.Background())
	defer cancel()
	list, err := rt.ListPodSandbox(ctx, &runtime.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("CRI ListPodSandbox: %w", err)
	}
	var errs []error
	for _, sb := range list.GetItems() {
		if _, err := rt.StopPodSandbox(ctx, &runtime.StopPodSandboxRequest{PodSandboxId: sb.GetId()}); err != nil {
			errs = append(errs, fmt.Errorf("CRI StopPodSandbox %s: %w", sb.GetId(), err))
			continue
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtime.RemovePodSandboxRequest{PodSandboxId: sb.GetId()}); err != nil {
			errs = append(errs, fmt.Errorf("CRI RemovePodSandbox %s: %w", sb.GetId(), err))
		}
	}
	return errors.Join(errs...)
}
