// Package privateimages is the node stand-in test of private Docker Hub images: a fake Docker
// Hub with a private repository, a hubcache proxy that holds credentials able to read it, and
// a private containerd driven through CRI PullImage as the kubelet drives it (the Pod's pull
// secret passed as AuthConfig). It shows that the private image is pulled straight from the
// hub with the Pod's secret, that public images go through hubcache, and that the proxy never
// hands the private repository to a client without credentials unless it is allow-listed.
package privateimages
