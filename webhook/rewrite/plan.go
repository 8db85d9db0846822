package rewrite

import (
	"errors"
	"fmt"
	"path"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/hubcache/hubcache/proxy/imageref"
)

// Policy is what the operator configures about rewriting.
type Policy struct {
	// Target is the cache's host[:port]; DefaultTarget when empty.
	Target string
	// Exclude holds glob patterns (path.Match syntax) matched against the reference as
	// written, its normalised form ("docker.io/library/busybox:latest") and its normalised
	// name without tag or digest ("docker.io/library/busybox"), e.g. "docker.io/library/busybox*".
	Exclude []string
}

// target returns the configured target or the default.
func (p Policy) target() string {
	if p.Target == "" {
		return DefaultTarget
	}
	return p.Target
}

// Validate reports a target that is not a registry host[:port], a target that is Docker Hub
// itself (rewritten references would point back at the upstream), and malformed patterns.
func (p Policy) Validate() error {
	t := p.target()
	if !imageref.ValidHost(t) {
		return fmt.Errorf("target %q: must be a registry host[:port] such as %s", t, DefaultTarget)
	}
	// Parsers read the first component of a reference as a host only when it has a '.' or a
	// ':' or is "localhost"; any other target would turn into a Docker Hub path.
	if !strings.ContainsAny(t, ".:") && t != "localhost" {
		return fmt.Errorf("target %q: must contain a '.' or a ':' port, or be localhost, to be read as a registry host", t)
	}
	if imageref.IsDockerHub(strings.ToLower(t)) {
		return fmt.Errorf("target %q: must not be Docker Hub itself", t)
	}
	var errs []error
	for _, pat := range p.Exclude {
		if _, err := path.Match(pat, ""); err != nil {
			errs = append(errs, fmt.Errorf("exclude pattern %q: %w", pat, err))
		}
	}
	return errors.Join(errs...)
}

// Image decides what happens to one image reference. Container and ContainerType are left
// empty for the caller to fill in.
func Image(ref string, p Policy) Decision {
	d := Decision{Original: ref}
	target := p.target()
	parsed, err := imageref.Parse(ref)
	if err != nil {
		d.Reason, d.Detail = ReasonInvalid, err.Error()
		return d
	}
	host := parsed.Context().RegistryStr()
	if strings.EqualFold(host, target) {
		d.Reason, d.Detail = ReasonAlreadyRewritten, "already served by "+target
		return d
	}
	parts := imageref.Parts(parsed)
	if !imageref.IsDockerHub(parts.Registry) {
		d.Reason, d.Detail = ReasonOtherRegistry, "registry "+host+" is not Docker Hub"
		return d
	}
	if pat, ok := excluded(p.Exclude, ref, parts); ok {
		d.Reason, d.Detail = ReasonExcluded, fmt.Sprintf("matches exclude pattern %q", pat)
		return d
	}
	if n := len(target) + 1 + len(parts.Name()); n > imageref.MaxNameLength {
		d.Reason = ReasonTooLong
		d.Detail = fmt.Sprintf("rewritten name would be %d characters, more than %d", n, imageref.MaxNameLength)
		return d
	}
	d.Rewritten = imageref.Map(target, parsed)
	d.Reason = ReasonRewritten
	return d
}

// excluded returns the first pattern matching the reference as written, its normalised form
// or its normalised name.
func excluded(patterns []string, ref string, parts imageref.Ref) (string, bool) {
	forms := []string{ref, parts.Normalized().String(), parts.Name()}
	for _, pat := range patterns {
		for _, f := range forms {
			// A malformed pattern matches nothing; Validate reports it.
			if ok, _ := path.Match(pat, f); ok {
				return pat, true
			}
		}
	}
	return "", false
}

// Plan decides for every container of a pod spec: containers, then initContainers, then
// ephemeralContainers, each in spec order. A pod annotated hubcache.io/skip: "true" keeps
// every image, each decision saying so. For a pod with imagePullSecrets nobody has asked the
// cache about visibility: its rewrites say ReasonVisibilityUnchecked (PlanWith decides with
// the answers).
func Plan(annotations map[string]string, spec *corev1.PodSpec, p Policy) []Decision {
	return plan(annotations, spec, func(ref string) Decision { return Image(ref, p) })
}

// plan is Plan, with decide deciding about one reference as Image does for the policy.
func plan(annotations map[string]string, spec *corev1.PodSpec, decide func(string) Decision) []Decision {
	if spec == nil {
		return nil
	}
	skip := annotations[AnnotationSkip] == "true"
	secrets := hasPullSecrets(spec)
	// One decision per container, allocated once (a Pod may have tens of thousands).
	var ds []Decision
	if n := len(spec.Containers) + len(spec.InitContainers) + len(spec.EphemeralContainers); n > 0 {
		ds = make([]Decision, 0, n)
	}
	// Pods repeat images (sidecars, many copies of one worker): each distinct reference is
	// parsed once per plan, since parsing is most of the plan's cost.
	decided := map[string]Decision{}
	add := func(name, image string, t ContainerType) {
		var d Decision
		if skip {
			d = Decision{Original: image, Reason: ReasonPodSkipped,
				Detail: fmt.Sprintf("pod annotation %s is \"true\"", AnnotationSkip)}
		} else {
			var ok bool
			if d, ok = decided[image]; !ok {
				d = decide(image)
				decided[image] = d
			}
			if secrets && d.Reason == ReasonRewritten {
				d.Reason = ReasonVisibilityUnchecked
				d.Detail = "the pod has imagePullSecrets; a private image would fail to pull from the cache " +
					"(give the webhook --proxy to check)"
			}
		}
		d.Container, d.ContainerType = name, t
		ds = append(ds, d)
	}
	for _, c := range spec.Containers {
		add(c.Name, c.Image, Container)
	}
	for _, c := range spec.InitContainers {
		add(c.Name, c.Image, InitContainer)
	}
	for _, c := range spec.EphemeralContainers {
		add(c.Name, c.Image, EphemeralContainer)
	}
	return ds
}

// Apply sets the rewritten images of ds in spec and reports whether anything changed. A
// decision whose container is gone or whose image no longer matches its Original is ignored,
// so a stale plan never overwrites an image it did not decide about.
func Apply(spec *corev1.PodSpec, ds []Decision) bool {
	if spec == nil {
		return false
	}
	type key struct {
		name string
		t    ContainerType
	}
	// One lookup per container keeps Apply linear in the size of the pod.
	byContainer := make(map[key]Decision, len(ds))
	for _, d := range ds {
		k := key{d.Container, d.ContainerType}
		if _, seen := byContainer[k]; d.Changed() && !seen {
			byContainer[k] = d
		}
	}
	changed := false
	set := func(name string, t ContainerType, image *string) {
		if d, ok := byContainer[key{name, t}]; ok && d.Original == *image {
			*image = d.Rewritten
			changed = true
		}
	}
	for i := range spec.Containers {
		set(spec.Containers[i].Name, Container, &spec.Containers[i].Image)
	}
	for i := range spec.InitContainers {
		set(spec.InitContainers[i].Name, InitContainer, &spec.InitContainers[i].Image)
	}
	for i := range spec.EphemeralContainers {
		set(spec.EphemeralContainers[i].Name, EphemeralContainer, &spec.EphemeralContainers[i].Image)
	}
	return changed
}

// OriginalImages maps container name to original image for the decisions that rewrite, the
// content of the hubcache.io/original-images annotation. Container names are unique across a
// pod's container lists, so one map holds all of them.
func OriginalImages(ds []Decision) map[string]string {
	m := map[string]string{}
	for _, d := range ds {
		if d.Changed() {
			m[d.Container] = d.Original
		}
	}
	return m
}
