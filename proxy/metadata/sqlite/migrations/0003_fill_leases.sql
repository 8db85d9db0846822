-- Nothing: fill leases exist only in Postgres (replicas share fills through it). This file
-- keeps the versions of both stores the same and without gaps.
SELECT 1;
