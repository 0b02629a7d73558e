CREATE INDEX "function_versions_created_by_idx" ON "function_versions" USING btree ("created_by");--> statement-breakpoint
CREATE INDEX "functions_group_id_idx" ON "functions" USING btree ("group_id");--> statement-breakpoint
CREATE INDEX "request_logs_permission_used_timestamp_idx" ON "request_logs" USING btree ("permission_used","timestamp");--> statement-breakpoint
CREATE INDEX "states_group_id_visible_idx" ON "states" USING btree ("group_id") WHERE "states"."visibility" = 'group';