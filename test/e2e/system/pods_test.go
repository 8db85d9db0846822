package system

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
)

// podTimeout bounds every wait for a Pod: Ready takes about a second on an idle machine.
const podTimeout = 2 * time.Minute

// testPod is a Pod with one container running image. With a node name it is bound to that
// node (there is no scheduler) and uses the host network (there is no CNI); without one it
// stays Pending, for steps that only look at what admission stored.
func testPod(name, nodeName, image string, pull corev1.PullPolicy) *corev1.Pod {
	grace := int64(1)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			NodeName:    nodeName,
			HostNetwork: nodeName != "",
			DNSPolicy:   corev1.DNSDefault,
			// No controller-manager publishes the kube-root-ca.crt ConfigMap a token volume needs.
			AutomountServiceAccountToken:  new(bool), // false
			TerminationGracePeriodSeconds: &grace,
			Containers: []corev1.Container{{
				Name:            "app",
				Image:           image,
				ImagePullPolicy: pull,
			}},
		},
	}
}

// waitReady waits for the Pod's Ready condition (not its phase: a Pod is Running while its
// container restarts). The error carries the Pod's events.
func waitReady(ctx context.Context, c kubernetes.Interface, ns, name string) (*corev1.Pod, error) {
	ctx, cancel := context.WithTimeout(ctx, podTimeout)
	defer cancel()
	for {
		p, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
					return p, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("pod %s/%s not Ready within %s (last error %v); events:\n%s",
				ns, name, podTimeout, err, eventLines(c, ns, name))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitPullFailure waits until the Pod's container is waiting with ErrImagePull or
// ImagePullBackOff and the kubelet's "Failed" event is recorded; it returns that event's
// message.
func waitPullFailure(ctx context.Context, c kubernetes.Interface, ns, name string) (reason, message string, err error) {
	ctx, cancel := context.WithTimeout(ctx, podTimeout)
	defer cancel()
	for {
		p, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			for _, st := range p.Status.ContainerStatuses {
				if w := st.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
					reason = w.Reason
				}
			}
		}
		if reason != "" {
			for _, e := range events(ctx, c, ns, name) {
				if e.Reason == "Failed" && strings.Contains(e.Message, "Failed to pull image") {
					return reason, e.Message, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return "", "", fmt.Errorf("pod %s/%s shows no pull failure within %s (container reason %q); events:\n%s",
				ns, name, podTimeout, reason, eventLines(c, ns, name))
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// deleteAndWait deletes a Pod and waits until the kubelet has stopped it and the object is
// gone (the kubelet removes it once its containers are stopped).
func deleteAndWait(ctx context.Context, c kubernetes.Interface, ns, name string) error {
	ctx, cancel := context.WithTimeout(ctx, podTimeout)
	defer cancel()
	if err := c.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("deleting pod %s/%s: %w", ns, name, err)
	}
	for {
		_, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("pod %s/%s still exists %s after its deletion", ns, name, podTimeout)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func events(ctx context.Context, c kubernetes.Interface, ns, name string) []corev1.Event {
	list, err := c.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("involvedObject.name", name).String(),
	})
	if err != nil {
		return nil
	}
	return list.Items
}

// eventLines renders a Pod's events, one per line, for failure messages and the timeline.
func eventLines(c kubernetes.Interface, ns, name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var b strings.Builder
	for _, e := range events(ctx, c, ns, name) {
		fmt.Fprintf(&b, "  %s %s: %s\n", e.Type, e.Reason, e.Message)
	}
	if b.Len() == 0 {
		return "  (none)\n"
	}
	return b.String()
}

// hasEvent reports whether the Pod has an event with reason whose message contains substr.
func hasEvent(ctx context.Context, c kubernetes.Interface, ns, name, reason, substr string) bool {
	for _, e := range events(ctx, c, ns, name) {
		if e.Reason == reason && strings.Contains(e.Message, substr) {
			return true
		}
	}
	return false
}
