package manifest

import (
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// newObject returns an empty object for the kinds that carry pod templates, or nil.
func newObject(gvk schema.GroupVersionKind) any {
	switch gvk {
	case corev1.SchemeGroupVersion.WithKind("Pod"):
		return &corev1.Pod{}
	case corev1.SchemeGroupVersion.WithKind("PodTemplate"):
		return &corev1.PodTemplate{}
	case corev1.SchemeGroupVersion.WithKind("ReplicationController"):
		return &corev1.ReplicationController{}
	case appsv1.SchemeGroupVersion.WithKind("Deployment"):
		return &appsv1.Deployment{}
	case appsv1.SchemeGroupVersion.WithKind("StatefulSet"):
		return &appsv1.StatefulSet{}
	case appsv1.SchemeGroupVersion.WithKind("DaemonSet"):
		return &appsv1.DaemonSet{}
	case appsv1.SchemeGroupVersion.WithKind("ReplicaSet"):
		return &appsv1.ReplicaSet{}
	case batchv1.SchemeGroupVersion.WithKind("Job"):
		return &batchv1.Job{}
	case batchv1.SchemeGroupVersion.WithKind("CronJob"):
		return &batchv1.CronJob{}
	}
	return nil
}

// supportedVersion returns the apiVersion this package reads for a kind that carries a pod
// template under another version (apps/v1beta2 Deployment, extensions/v1beta1 DaemonSet,
// batch/v1beta1 CronJob …).
func supportedVersion(gk schema.GroupKind) (string, bool) {
	switch gk.Kind {
	case "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet":
		if gk.Group == "apps" || gk.Group == "extensions" {
			return appsv1.SchemeGroupVersion.String(), true
		}
	case "Job", "CronJob":
		if gk.Group == "batch" {
			return batchv1.SchemeGroupVersion.String(), true
		}
	case "Pod", "PodTemplate", "ReplicationController":
		if gk.Group == "" {
			return corev1.SchemeGroupVersion.String(), true
		}
	}
	return "", false
}

// FromObject returns the workload of a typed object of a kind that carries a pod template.
// Kind is set from the Go type, since objects read from the API have an empty TypeMeta.
func FromObject(obj any) (Workload, bool) {
	var (
		w    Workload
		meta *metav1.ObjectMeta
		tmpl *corev1.PodTemplateSpec
	)
	switch o := obj.(type) {
	case *corev1.Pod:
		w = Workload{Kind: "Pod", Annotations: o.Annotations, Spec: &o.Spec}
		meta = &o.ObjectMeta
	case *corev1.PodTemplate:
		w.Kind, meta, tmpl = "PodTemplate", &o.ObjectMeta, &o.Template
	case *corev1.ReplicationController:
		if o.Spec.Template == nil {
			return Workload{}, false
		}
		w.Kind, meta, tmpl = "ReplicationController", &o.ObjectMeta, o.Spec.Template
	case *appsv1.Deployment:
		w.Kind, meta, tmpl = "Deployment", &o.ObjectMeta, &o.Spec.Template
	case *appsv1.StatefulSet:
		w.Kind, meta, tmpl = "StatefulSet", &o.ObjectMeta, &o.Spec.Template
	case *appsv1.DaemonSet:
		w.Kind, meta, tmpl = "DaemonSet", &o.ObjectMeta, &o.Spec.Template
	case *appsv1.ReplicaSet:
		w.Kind, meta, tmpl = "ReplicaSet", &o.ObjectMeta, &o.Spec.Template
	case *batchv1.Job:
		w.Kind, meta, tmpl = "Job", &o.ObjectMeta, &o.Spec.Template
	case *batchv1.CronJob:
		w.Kind, meta, tmpl = "CronJob", &o.ObjectMeta, &o.Spec.JobTemplate.Spec.Template
	default:
		return Workload{}, false
	}
	if tmpl != nil {
		w.Annotations, w.Spec = tmpl.Annotations, &tmpl.Spec
	}
	w.Namespace, w.Name, w.UID, w.Owners = meta.Namespace, meta.Name, string(meta.UID), meta.OwnerReferences
	return w, true
}
