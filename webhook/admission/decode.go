package admission

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	corev1 "k8s.io/api/core/v1"
)

// podView is the part of a Pod the webhook reads: its kind, annotations, pull secrets and
// container names and images. Decoding only these keeps the cost per container small (a
// full corev1.Container is large, and a 40,000-container Pod would be copied around as
// one), and everything else in the object is left to the API server to judge. The patch
// addresses images by path, so fields not read here survive untouched.
type podView struct {
	Kind string `json:"kind"`
	// Metadata is nil when the object has none (the patch must then add it whole).
	Metadata *podMetadata `json:"metadata"`
	Spec     struct {
		ImagePullSecrets    []corev1.LocalObjectReference `json:"imagePullSecrets"`
		Containers          []containerView               `json:"containers"`
		InitContainers      []containerView               `json:"initContainers"`
		EphemeralContainers []containerView               `json:"ephemeralContainers"`
	} `json:"spec"`
	// spec is Spec in the form the rewrite plan takes.
	spec corev1.PodSpec
}

type podMetadata struct {
	Annotations map[string]string `json:"annotations"`
}

type containerView struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}

func (p *podView) annotations() map[string]string {
	if p.Metadata == nil {
		return nil
	}
	return p.Metadata.Annotations
}

// decodePod reads the Pod from an AdmissionRequest object: with leanDecode for JSON as the API
// server writes it, with encoding/json otherwise.
func decodePod(raw []byte) (*podView, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return nil, errors.New("the request carries no object")
	}
	pod, ok := leanDecode(trimmed)
	if !ok {
		var err error
		if pod, err = decodePodJSON(trimmed); err != nil {
			return nil, err
		}
	}
	if pod.Kind != "" && pod.Kind != "Pod" {
		return nil, fmt.Errorf("the object is a %s, not a Pod", pod.Kind)
	}
	return pod, nil
}

// decodePodJSON reads the podView with encoding/json.
func decodePodJSON(b []byte) (*podView, error) {
	var pod podView
	if err := json.Unmarshal(b, &pod); err != nil {
		return nil, err
	}
	pod.derive()
	return &pod, nil
}

// derive fills spec from Spec.
func (p *podView) derive() {
	p.spec.ImagePullSecrets = p.Spec.ImagePullSecrets
	p.spec.Containers = containers(p.Spec.Containers)
	p.spec.InitContainers = containers(p.Spec.InitContainers)
	if n := len(p.Spec.EphemeralContainers); n > 0 {
		p.spec.EphemeralContainers = make([]corev1.EphemeralContainer, n)
		for i, c := range p.Spec.EphemeralContainers {
			p.spec.EphemeralContainers[i].Name, p.spec.EphemeralContainers[i].Image = c.Name, c.Image
		}
	}
}

func containers(cs []containerView) []corev1.Container {
	if len(cs) == 0 {
		return nil
	}
	out := make([]corev1.Container, len(cs))
	for i, c := range cs {
		out[i].Name, out[i].Image = c.Name, c.Image
	}
	return out
}
