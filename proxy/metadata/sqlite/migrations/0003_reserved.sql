-- Reserved for the fill_leases migration of another branch; the lead renumbers at merge.
SELECT 1;
