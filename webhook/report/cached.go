package report

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hubcache/hubcache/proxy/imageref"
	"github.com/hubcache/hubcache/webhook/rewrite"
)

// CachedImage is one container of a live Pod whose image points at the cache. JSON keys
// (contract of `hubcache diff --cluster --cached -o json`): namespace, pod, container,
// containerType, image, original ("" when the Pod has no record of it).
type CachedImage struct {
	Namespace     string                `json:"namespace"`
	Pod           string                `json:"pod"`
	Container     string                `json:"container"`
	ContainerType rewrite.ContainerType `json:"containerType"`
	Image         string                `json:"image"`
	Original      string                `json:"original"`
}

// CachedPods lists the containers of the Pods in namespace ("" for all) whose image's
// registry host is target (the cache's node entry point). While any is left, removing the
// node entry point breaks the next pull of those Pods (a restart, a new node).
func CachedPods(ctx context.Context, c client.Reader, namespace, target string) ([]CachedImage, error) {
	if target == "" {
		target = rewrite.DefaultTarget
	}
	var pods corev1.PodList
	if err := c.List(ctx, &pods, client.InNamespace(namespace)); err != nil {
		return nil, fmt.Errorf("listing pods: %w", err)
	}
	out := []CachedImage{}
	for i := range pods.Items {
		p := &pods.Items[i]
		originals := map[string]string{}
		// A damaged annotation only costs the original column.
		_ = json.Unmarshal([]byte(p.Annotations[rewrite.AnnotationOriginalImages]), &originals)
		add := func(name, image string, t rewrite.ContainerType) {
			if pointsAt(image, target) {
				out = append(out, CachedImage{Namespace: p.Namespace, Pod: p.Name, Container: name,
					ContainerType: t, Image: image, Original: originals[name]})
			}
		}
		for _, c := range p.Spec.Containers {
			add(c.Name, c.Image, rewrite.Container)
		}
		for _, c := range p.Spec.InitContainers {
			add(c.Name, c.Image, rewrite.InitContainer)
		}
		for _, c := range p.Spec.EphemeralContainers {
			add(c.Name, c.Image, rewrite.EphemeralContainer)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Namespace != out[j].Namespace {
			return out[i].Namespace < out[j].Namespace
		}
		return out[i].Pod < out[j].Pod
	})
	return out, nil
}

// pointsAt reports whether image's registry host is target.
func pointsAt(image, target string) bool {
	ref, err := imageref.Parse(image)
	if err != nil {
		return false
	}
	return strings.EqualFold(ref.Context().RegistryStr(), target)
}

// WriteCached renders the listing: a table for a terminal (FormatDiff), JSON, or Markdown.
func WriteCached(w io.Writer, f Format, cs []CachedImage) error {
	switch f {
	case FormatJSON:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(cs)
	case FormatMarkdown:
		if _, err := fmt.Fprintf(w, "%d containers of live Pods point at the cache\n\n", len(cs)); err != nil {
			return err
		}
		if len(cs) == 0 {
			return nil
		}
		fmt.Fprintln(w, "| Namespace | Pod | Container | Image | Original |")
		fmt.Fprintln(w, "|---|---|---|---|---|")
		for _, c := range cs {
			fmt.Fprintf(w, "| %s | %s | %s | `%s` | `%s` |\n", c.Namespace, c.Pod, c.Container, c.Image, c.Original)
		}
		return nil
	}
	if len(cs) == 0 {
		_, err := fmt.Fprintln(w, "no live Pod points at the cache")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tPOD\tCONTAINER\tIMAGE\tORIGINAL")
	for _, c := range cs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", c.Namespace, c.Pod, c.Container, c.Image, c.Original)
	}
	return tw.Flush()
}
