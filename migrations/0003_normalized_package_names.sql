-- Package approvals become unique by their PEP 503 name (lowercase, runs of - _ . as one -), so `PyYAML` and
-- `pyyaml` are one package. Existing data may hold two spellings of one package (runs then used either row,
-- and so either lock): keep one per name, a locked approval before an unlocked one (the stricter), then the
-- oldest, and delete the others before the index is created.
DELETE FROM "installed_packages" AS "later"
USING "installed_packages" AS "kept"
WHERE regexp_replace(lower("kept"."package_name"), '[-_.]+', '-', 'g') = regexp_replace(lower("later"."package_name"), '[-_.]+', '-', 'g')
  AND ("kept"."version" IS NULL, "kept"."installed_at", "kept"."id") < ("later"."version" IS NULL, "later"."installed_at", "later"."id");--> statement-breakpoint
ALTER TABLE "installed_packages" DROP CONSTRAINT "installed_packages_package_name_unique";--> statement-breakpoint
CREATE UNIQUE INDEX "installed_packages_normalized_name_key" ON "installed_packages" USING btree (regexp_replace(lower("package_name"), '[-_.]+', '-', 'g'));
