ALTER TABLE "pending_tool_approvals" DROP CONSTRAINT "pending_tool_approvals_tool_call_id_unique";--> statement-breakpoint
DROP INDEX "pending_tool_approvals_message_id_idx";--> statement-breakpoint
CREATE UNIQUE INDEX "pending_tool_approvals_message_id_tool_call_id_key" ON "pending_tool_approvals" USING btree ("message_id","tool_call_id");