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
	Metadata *struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"metadata"`
	Spec struct {
		ImagePullSecrets    []corev1.LocalObjectReference `json:"imagePullSecrets"`
		Containers          []containerView               `json:"containers"`
		InitContainers      []containerView               `json:"initContainers"`
		EphemeralContainers []containerView               `json:"ephemeralContainers"`
	} `json:"spec"`
	// spec is Spec in the form the rewrite plan takes.
	spec corev1.PodSpec
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

// decodePod reads the Pod from an AdmissionRequest object.
func decodePod(raw []byte) (*podView, error) {
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || bytes.Equal(trimmed, []byte("null")) {
		return nil, errors.New("the request carries no object")
	}
	var pod podView
	if err := json.Unmarshal(trimmed, &pod); err != nil {
		return nil, err
	}
	if pod.Kind != "" && pod.Kind != "Pod" {
		return nil, fmt.Errorf("the object is a %s, not a Pod", pod.Kind)
	}
	pod.spec.ImagePullSecrets = pod.Spec.ImagePullSecrets
	pod.spec.Containers = containers(pod.Spec.Containers)
	pod.spec.InitContainers = containers(pod.Spec.InitContainers)
	if n := len(pod.Spec.EphemeralContainers); n > 0 {
		pod.spec.EphemeralContainers = make([]corev1.EphemeralContainer, n)
		for i, c := range pod.Spec.EphemeralContainers {
			pod.spec.EphemeralContainers[i].Name, pod.spec.EphemeralContainers[i].Image = c.Name, c.Image
		}
	}
	return &pod, nil
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
