package webhook_test

import (
	"testing"
)

// TestDiffClusterMatchesWebhook checks that `hubcache diff --cluster`, run against the same
// API server, reports exactly what the webhook decided for every pod TestWebhookEndToEnd
// created: the rewritten images (annotation hubcache.io/original-images → stored image) as
// "already-rewritten", and in the dry-run namespace the would-be rewrites the webhook warned
// about as "rewritten".
//
// TODO(lead): wire this to webhook/report's ListCluster once it is exported. Sketch:
//
//	c := sharedCluster(t)
//	TestWebhookEndToEnd must have run first (or create its pods here), then
//	entries, err := report.ListCluster(ctx, c.client, report.ClusterOptions{AllNamespaces: true}, rewrite.Policy{})
//	and compare, for every pod in nsEnabled and nsDryRun, each entry's container, original,
//	rewritten and reason with the pod stored by the API server and the warnings recorded.
func TestDiffClusterMatchesWebhook(t *testing.T) {
	t.Skip("TODO(lead): wire to webhook/report ListCluster (not exported yet)")
}
