CREATE TYPE "public"."executionstatus" AS ENUM('PENDING', 'RUNNING', 'AWAITING_INPUT', 'COMPLETED', 'FAILED');--> statement-breakpoint
CREATE TYPE "public"."httpmethod" AS ENUM('GET', 'POST', 'PUT', 'DELETE', 'PATCH');--> statement-breakpoint
CREATE TYPE "public"."triggertype" AS ENUM('WEBHOOK', 'SCHEDULE', 'AGENT', 'API', 'MANUAL');--> statement-breakpoint
CREATE TABLE "agents" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid,
	"group_id" uuid,
	"namespace" varchar(255) DEFAULT 'default' NOT NULL,
	"name" varchar(255) NOT NULL,
	"description" text,
	"llm_provider_id" uuid,
	"model" varchar(100),
	"temperature" double precision DEFAULT 0.7 NOT NULL,
	"max_tokens" integer,
	"system_prompt" text,
	"input_schema" json DEFAULT '{}'::json NOT NULL,
	"output_schema" json DEFAULT '{}'::json NOT NULL,
	"initial_messages" json,
	"enabled_functions" json DEFAULT '[]'::json NOT NULL,
	"enabled_mcp_tools" json DEFAULT '[]'::json NOT NULL,
	"enabled_agents" json DEFAULT '[]'::json NOT NULL,
	"function_parameters" json DEFAULT '{}'::json NOT NULL,
	"mcp_tool_parameters" json DEFAULT '{}'::json NOT NULL,
	"state_namespaces_readonly" json DEFAULT '[]'::json NOT NULL,
	"state_namespaces_readwrite" json DEFAULT '[]'::json NOT NULL,
	"is_active" boolean DEFAULT true NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"managed_by" text,
	"config_name" text,
	"config_checksum" text
);
--> statement-breakpoint
CREATE TABLE "api_keys" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"name" varchar(255) NOT NULL,
	"key_hash" varchar(64) NOT NULL,
	"key_prefix" varchar(16) NOT NULL,
	"permissions" json NOT NULL,
	"is_active" boolean DEFAULT true NOT NULL,
	"last_used_at" timestamp with time zone,
	"expires_at" timestamp with time zone,
	"revoked_at" timestamp with time zone,
	"created_by" uuid,
	"revoked_by" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "api_keys_key_hash_unique" UNIQUE("key_hash")
);
--> statement-breakpoint
CREATE TABLE "chats" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"group_id" uuid,
	"agent_id" uuid,
	"agent_namespace" varchar(255),
	"agent_name" varchar(255),
	"title" varchar(500) NOT NULL,
	"chat_metadata" json,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "executions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"execution_id" varchar(255) NOT NULL,
	"function_namespace" varchar(255) DEFAULT 'default' NOT NULL,
	"function_name" varchar(255) NOT NULL,
	"trigger_type" "triggertype" NOT NULL,
	"trigger_id" varchar(255) NOT NULL,
	"chat_id" uuid,
	"status" "executionstatus" DEFAULT 'RUNNING' NOT NULL,
	"input_data" json NOT NULL,
	"output_data" json,
	"error" text,
	"error_type" varchar(32),
	"traceback" text,
	"started_at" timestamp with time zone DEFAULT now() NOT NULL,
	"completed_at" timestamp with time zone,
	"duration_ms" integer,
	"generator_state" "bytea",
	"input_prompt" text,
	"input_schema" json,
	CONSTRAINT "executions_execution_id_unique" UNIQUE("execution_id")
);
--> statement-breakpoint
CREATE TABLE "function_versions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"function_id" uuid NOT NULL,
	"version" integer NOT NULL,
	"code" text NOT NULL,
	"input_schema" json NOT NULL,
	"output_schema" json NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"created_by" uuid NOT NULL
);
--> statement-breakpoint
CREATE TABLE "functions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"group_id" uuid,
	"namespace" varchar(255) DEFAULT 'default' NOT NULL,
	"name" varchar(255) NOT NULL,
	"description" text,
	"code" text NOT NULL,
	"input_schema" json NOT NULL,
	"output_schema" json NOT NULL,
	"requirements" json DEFAULT '[]'::json NOT NULL,
	"enabled_namespaces" json DEFAULT '[]'::json NOT NULL,
	"is_active" boolean DEFAULT true NOT NULL,
	"shared_pool" boolean DEFAULT false NOT NULL,
	"requires_approval" boolean DEFAULT false NOT NULL,
	"timeout_seconds" integer,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"managed_by" text,
	"config_name" text,
	"config_checksum" text
);
--> statement-breakpoint
CREATE TABLE "group_members" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"group_id" uuid NOT NULL,
	"user_id" uuid NOT NULL,
	"role" varchar(100),
	"active" boolean DEFAULT true NOT NULL,
	"added_at" timestamp with time zone DEFAULT now() NOT NULL,
	"added_by" uuid,
	"removed_by" uuid,
	"removed_at" timestamp with time zone,
	"managed_by" text
);
--> statement-breakpoint
CREATE TABLE "group_permissions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"group_id" uuid NOT NULL,
	"permission_key" varchar(255) NOT NULL,
	"permission_value" boolean NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"managed_by" text
);
--> statement-breakpoint
CREATE TABLE "groups" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" varchar(255) NOT NULL,
	"description" text,
	"email_domain" varchar(255),
	"external_group_id" varchar(255),
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"managed_by" text,
	"config_name" text,
	"config_checksum" text,
	CONSTRAINT "groups_name_unique" UNIQUE("name"),
	CONSTRAINT "groups_external_group_id_unique" UNIQUE("external_group_id")
);
--> statement-breakpoint
CREATE TABLE "installed_packages" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"package_name" varchar(255) NOT NULL,
	"version" varchar(50),
	"installed_at" timestamp with time zone DEFAULT now() NOT NULL,
	"installed_by" uuid,
	CONSTRAINT "installed_packages_package_name_unique" UNIQUE("package_name")
);
--> statement-breakpoint
CREATE TABLE "llm_providers" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"name" varchar(100) NOT NULL,
	"provider_type" varchar(50) NOT NULL,
	"api_key" text,
	"api_endpoint" varchar(500),
	"default_model" varchar(100),
	"config" json DEFAULT '{}'::json NOT NULL,
	"is_default" boolean DEFAULT false NOT NULL,
	"is_active" boolean DEFAULT true NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"managed_by" text,
	"config_name" text,
	"config_checksum" text,
	CONSTRAINT "llm_providers_name_unique" UNIQUE("name")
);
--> statement-breakpoint
CREATE TABLE "mcp_servers" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"group_id" uuid,
	"name" varchar(255) NOT NULL,
	"url" varchar(1000) NOT NULL,
	"protocol" varchar(20) NOT NULL,
	"api_key" text,
	"is_active" boolean DEFAULT true NOT NULL,
	"last_connected" timestamp with time zone,
	"connection_status" varchar(50) DEFAULT 'disconnected' NOT NULL,
	"error_message" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"managed_by" text,
	"config_name" text,
	"config_checksum" text,
	CONSTRAINT "mcp_servers_name_unique" UNIQUE("name")
);
--> statement-breakpoint
CREATE TABLE "messages" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"chat_id" uuid NOT NULL,
	"sequence" bigint GENERATED ALWAYS AS IDENTITY (sequence name "messages_sequence_seq" INCREMENT BY 1 MINVALUE 1 MAXVALUE 9223372036854775807 START WITH 1 CACHE 1),
	"role" varchar(20) NOT NULL,
	"content" text,
	"tool_calls" json,
	"tool_call_id" varchar(255),
	"name" varchar(255),
	"enabled_functions" json,
	"enabled_mcp_tools" json,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "otp_sessions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"email" varchar(255) NOT NULL,
	"code_hash" varchar(64) NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"verified" boolean DEFAULT false NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "pending_tool_approvals" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"chat_id" uuid NOT NULL,
	"message_id" uuid NOT NULL,
	"user_id" uuid NOT NULL,
	"tool_call_id" varchar(255) NOT NULL,
	"function_namespace" varchar(255) NOT NULL,
	"function_name" varchar(255) NOT NULL,
	"arguments" json NOT NULL,
	"all_tool_calls" json NOT NULL,
	"conversation_context" json NOT NULL,
	"approved" boolean,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "pending_tool_approvals_tool_call_id_unique" UNIQUE("tool_call_id")
);
--> statement-breakpoint
CREATE TABLE "refresh_tokens" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"token_hash" varchar(64) NOT NULL,
	"token_prefix" varchar(16) NOT NULL,
	"family_id" uuid NOT NULL,
	"replaced_by" uuid,
	"is_revoked" boolean DEFAULT false NOT NULL,
	"expires_at" timestamp with time zone NOT NULL,
	"last_used_at" timestamp with time zone,
	"revoked_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	CONSTRAINT "refresh_tokens_token_hash_unique" UNIQUE("token_hash")
);
--> statement-breakpoint
CREATE TABLE "request_logs" (
	"request_id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"timestamp" timestamp with time zone DEFAULT now() NOT NULL,
	"user_id" uuid,
	"user_email" text,
	"permission_used" text,
	"has_permission" boolean DEFAULT true NOT NULL,
	"method" varchar(16) NOT NULL,
	"path" text NOT NULL,
	"query_params" jsonb,
	"request_body" jsonb,
	"user_agent" text,
	"referer" text,
	"ip_address" text,
	"status_code" integer NOT NULL,
	"response_time_ms" integer NOT NULL,
	"response_size_bytes" integer DEFAULT 0 NOT NULL,
	"resource_type" text,
	"resource_id" text,
	"group_id" uuid,
	"error_message" text,
	"error_type" text,
	"metadata" jsonb
);
--> statement-breakpoint
CREATE TABLE "scheduled_jobs" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"group_id" uuid,
	"name" varchar(255) NOT NULL,
	"function_namespace" varchar(255) DEFAULT 'default' NOT NULL,
	"function_name" varchar(255) NOT NULL,
	"description" text,
	"cron_expression" varchar(255) NOT NULL,
	"timezone" varchar(50) DEFAULT 'UTC' NOT NULL,
	"input_data" json NOT NULL,
	"is_active" boolean DEFAULT true NOT NULL,
	"last_run" timestamp with time zone,
	"next_run" timestamp with time zone,
	"last_status" varchar(20),
	"last_execution_id" varchar(255),
	"last_error" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"managed_by" text,
	"config_name" text,
	"config_checksum" text
);
--> statement-breakpoint
CREATE TABLE "states" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"group_id" uuid,
	"namespace" varchar(100) NOT NULL,
	"key" varchar(255) NOT NULL,
	"value" json NOT NULL,
	"encrypted" boolean DEFAULT false NOT NULL,
	"value_ciphertext" text,
	"visibility" varchar(20) DEFAULT 'private' NOT NULL,
	"description" text,
	"tags" json DEFAULT '[]'::json NOT NULL,
	"relevance_score" double precision DEFAULT 1 NOT NULL,
	"expires_at" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "step_executions" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"execution_id" varchar(255) NOT NULL,
	"parent_step_id" uuid,
	"function_namespace" varchar(255) DEFAULT 'default' NOT NULL,
	"function_name" varchar(255) NOT NULL,
	"status" "executionstatus" DEFAULT 'RUNNING' NOT NULL,
	"input_data" json NOT NULL,
	"output_data" json,
	"error" text,
	"traceback" text,
	"duration_ms" integer,
	"started_at" timestamp with time zone NOT NULL,
	"completed_at" timestamp with time zone
);
--> statement-breakpoint
CREATE TABLE "templates" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"namespace" varchar(255) DEFAULT 'default' NOT NULL,
	"name" varchar(255) NOT NULL,
	"description" text,
	"user_id" uuid,
	"group_id" uuid,
	"title" text,
	"html_content" text NOT NULL,
	"text_content" text,
	"variable_schema" json DEFAULT '{}'::json NOT NULL,
	"is_active" boolean DEFAULT true NOT NULL,
	"created_by" uuid,
	"updated_by" uuid,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"managed_by" text,
	"config_name" text,
	"config_checksum" text
);
--> statement-breakpoint
CREATE TABLE "users" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"email" varchar(255) NOT NULL,
	"is_active" boolean DEFAULT true NOT NULL,
	"last_login_at" timestamp with time zone,
	"external_user_id" varchar(255),
	"external_metadata" json,
	"last_external_sync" timestamp with time zone,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"managed_by" text,
	"config_name" text,
	"config_checksum" text,
	CONSTRAINT "users_email_unique" UNIQUE("email"),
	CONSTRAINT "users_external_user_id_unique" UNIQUE("external_user_id")
);
--> statement-breakpoint
CREATE TABLE "webhooks" (
	"id" uuid PRIMARY KEY DEFAULT gen_random_uuid() NOT NULL,
	"user_id" uuid NOT NULL,
	"group_id" uuid,
	"path" varchar(255) NOT NULL,
	"function_namespace" varchar(255) DEFAULT 'default' NOT NULL,
	"function_name" varchar(255) NOT NULL,
	"http_method" "httpmethod" DEFAULT 'POST' NOT NULL,
	"description" text,
	"default_values" json,
	"is_active" boolean DEFAULT true NOT NULL,
	"requires_auth" boolean DEFAULT true NOT NULL,
	"async" boolean DEFAULT false NOT NULL,
	"rate_limit" varchar(32),
	"verification" varchar(16) DEFAULT 'none' NOT NULL,
	"secret_ciphertext" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"updated_at" timestamp with time zone DEFAULT now() NOT NULL,
	"managed_by" text,
	"config_name" text,
	"config_checksum" text
);
--> statement-breakpoint
ALTER TABLE "agents" ADD CONSTRAINT "agents_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "agents" ADD CONSTRAINT "agents_group_id_groups_id_fk" FOREIGN KEY ("group_id") REFERENCES "public"."groups"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "agents" ADD CONSTRAINT "agents_llm_provider_id_llm_providers_id_fk" FOREIGN KEY ("llm_provider_id") REFERENCES "public"."llm_providers"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_created_by_users_id_fk" FOREIGN KEY ("created_by") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "api_keys" ADD CONSTRAINT "api_keys_revoked_by_users_id_fk" FOREIGN KEY ("revoked_by") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "chats" ADD CONSTRAINT "chats_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "chats" ADD CONSTRAINT "chats_group_id_groups_id_fk" FOREIGN KEY ("group_id") REFERENCES "public"."groups"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "chats" ADD CONSTRAINT "chats_agent_id_agents_id_fk" FOREIGN KEY ("agent_id") REFERENCES "public"."agents"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "executions" ADD CONSTRAINT "executions_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "executions" ADD CONSTRAINT "executions_chat_id_chats_id_fk" FOREIGN KEY ("chat_id") REFERENCES "public"."chats"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "function_versions" ADD CONSTRAINT "function_versions_function_id_functions_id_fk" FOREIGN KEY ("function_id") REFERENCES "public"."functions"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "function_versions" ADD CONSTRAINT "function_versions_created_by_users_id_fk" FOREIGN KEY ("created_by") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "functions" ADD CONSTRAINT "functions_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "functions" ADD CONSTRAINT "functions_group_id_groups_id_fk" FOREIGN KEY ("group_id") REFERENCES "public"."groups"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "group_members" ADD CONSTRAINT "group_members_group_id_groups_id_fk" FOREIGN KEY ("group_id") REFERENCES "public"."groups"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "group_members" ADD CONSTRAINT "group_members_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "group_members" ADD CONSTRAINT "group_members_added_by_users_id_fk" FOREIGN KEY ("added_by") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "group_members" ADD CONSTRAINT "group_members_removed_by_users_id_fk" FOREIGN KEY ("removed_by") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "group_permissions" ADD CONSTRAINT "group_permissions_group_id_groups_id_fk" FOREIGN KEY ("group_id") REFERENCES "public"."groups"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "installed_packages" ADD CONSTRAINT "installed_packages_installed_by_users_id_fk" FOREIGN KEY ("installed_by") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "mcp_servers" ADD CONSTRAINT "mcp_servers_group_id_groups_id_fk" FOREIGN KEY ("group_id") REFERENCES "public"."groups"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "messages" ADD CONSTRAINT "messages_chat_id_chats_id_fk" FOREIGN KEY ("chat_id") REFERENCES "public"."chats"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "pending_tool_approvals" ADD CONSTRAINT "pending_tool_approvals_chat_id_chats_id_fk" FOREIGN KEY ("chat_id") REFERENCES "public"."chats"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "pending_tool_approvals" ADD CONSTRAINT "pending_tool_approvals_message_id_messages_id_fk" FOREIGN KEY ("message_id") REFERENCES "public"."messages"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "pending_tool_approvals" ADD CONSTRAINT "pending_tool_approvals_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "refresh_tokens" ADD CONSTRAINT "refresh_tokens_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "refresh_tokens" ADD CONSTRAINT "refresh_tokens_replaced_by_refresh_tokens_id_fk" FOREIGN KEY ("replaced_by") REFERENCES "public"."refresh_tokens"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "scheduled_jobs" ADD CONSTRAINT "scheduled_jobs_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "scheduled_jobs" ADD CONSTRAINT "scheduled_jobs_group_id_groups_id_fk" FOREIGN KEY ("group_id") REFERENCES "public"."groups"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "states" ADD CONSTRAINT "states_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "states" ADD CONSTRAINT "states_group_id_groups_id_fk" FOREIGN KEY ("group_id") REFERENCES "public"."groups"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "step_executions" ADD CONSTRAINT "step_executions_execution_id_executions_execution_id_fk" FOREIGN KEY ("execution_id") REFERENCES "public"."executions"("execution_id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "step_executions" ADD CONSTRAINT "step_executions_parent_step_id_step_executions_id_fk" FOREIGN KEY ("parent_step_id") REFERENCES "public"."step_executions"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "templates" ADD CONSTRAINT "templates_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "templates" ADD CONSTRAINT "templates_group_id_groups_id_fk" FOREIGN KEY ("group_id") REFERENCES "public"."groups"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "templates" ADD CONSTRAINT "templates_created_by_users_id_fk" FOREIGN KEY ("created_by") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "templates" ADD CONSTRAINT "templates_updated_by_users_id_fk" FOREIGN KEY ("updated_by") REFERENCES "public"."users"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "webhooks" ADD CONSTRAINT "webhooks_user_id_users_id_fk" FOREIGN KEY ("user_id") REFERENCES "public"."users"("id") ON DELETE no action ON UPDATE no action;--> statement-breakpoint
ALTER TABLE "webhooks" ADD CONSTRAINT "webhooks_group_id_groups_id_fk" FOREIGN KEY ("group_id") REFERENCES "public"."groups"("id") ON DELETE set null ON UPDATE no action;--> statement-breakpoint
CREATE UNIQUE INDEX "agents_namespace_name_key" ON "agents" USING btree ("namespace","name");--> statement-breakpoint
CREATE INDEX "agents_user_id_idx" ON "agents" USING btree ("user_id");--> statement-breakpoint
CREATE INDEX "api_keys_user_id_idx" ON "api_keys" USING btree ("user_id");--> statement-breakpoint
CREATE INDEX "chats_user_id_updated_at_idx" ON "chats" USING btree ("user_id","updated_at");--> statement-breakpoint
CREATE INDEX "chats_agent_id_idx" ON "chats" USING btree ("agent_id");--> statement-breakpoint
CREATE INDEX "executions_user_id_started_at_idx" ON "executions" USING btree ("user_id","started_at");--> statement-breakpoint
CREATE INDEX "executions_status_idx" ON "executions" USING btree ("status");--> statement-breakpoint
CREATE INDEX "executions_chat_id_idx" ON "executions" USING btree ("chat_id");--> statement-breakpoint
CREATE UNIQUE INDEX "function_versions_function_id_version_key" ON "function_versions" USING btree ("function_id","version");--> statement-breakpoint
CREATE UNIQUE INDEX "functions_namespace_name_key" ON "functions" USING btree ("namespace","name");--> statement-breakpoint
CREATE INDEX "functions_user_id_idx" ON "functions" USING btree ("user_id");--> statement-breakpoint
CREATE UNIQUE INDEX "group_members_group_id_user_id_key" ON "group_members" USING btree ("group_id","user_id");--> statement-breakpoint
CREATE INDEX "group_members_user_id_idx" ON "group_members" USING btree ("user_id");--> statement-breakpoint
CREATE UNIQUE INDEX "group_permissions_group_id_permission_key_key" ON "group_permissions" USING btree ("group_id","permission_key");--> statement-breakpoint
CREATE INDEX "groups_email_domain_idx" ON "groups" USING btree ("email_domain");--> statement-breakpoint
CREATE UNIQUE INDEX "llm_providers_single_default_key" ON "llm_providers" USING btree ("is_default") WHERE "is_default";--> statement-breakpoint
CREATE INDEX "messages_chat_id_sequence_idx" ON "messages" USING btree ("chat_id","sequence");--> statement-breakpoint
CREATE INDEX "otp_sessions_email_idx" ON "otp_sessions" USING btree ("email");--> statement-breakpoint
CREATE INDEX "pending_tool_approvals_message_id_idx" ON "pending_tool_approvals" USING btree ("message_id");--> statement-breakpoint
CREATE INDEX "pending_tool_approvals_chat_id_idx" ON "pending_tool_approvals" USING btree ("chat_id");--> statement-breakpoint
CREATE INDEX "refresh_tokens_user_id_idx" ON "refresh_tokens" USING btree ("user_id");--> statement-breakpoint
CREATE INDEX "refresh_tokens_family_id_idx" ON "refresh_tokens" USING btree ("family_id");--> statement-breakpoint
CREATE INDEX "request_logs_timestamp_idx" ON "request_logs" USING btree ("timestamp");--> statement-breakpoint
CREATE INDEX "request_logs_user_id_timestamp_idx" ON "request_logs" USING btree ("user_id","timestamp");--> statement-breakpoint
CREATE INDEX "request_logs_status_code_idx" ON "request_logs" USING btree ("status_code");--> statement-breakpoint
CREATE INDEX "request_logs_path_idx" ON "request_logs" USING btree ("path" text_pattern_ops);--> statement-breakpoint
CREATE UNIQUE INDEX "scheduled_jobs_name_key" ON "scheduled_jobs" USING btree ("name");--> statement-breakpoint
CREATE UNIQUE INDEX "scheduled_jobs_user_id_name_key" ON "scheduled_jobs" USING btree ("user_id","name");--> statement-breakpoint
CREATE INDEX "scheduled_jobs_due_idx" ON "scheduled_jobs" USING btree ("next_run") WHERE "scheduled_jobs"."is_active";--> statement-breakpoint
CREATE UNIQUE INDEX "states_user_id_namespace_key_key" ON "states" USING btree ("user_id","namespace","key");--> statement-breakpoint
CREATE INDEX "states_namespace_visibility_idx" ON "states" USING btree ("namespace","visibility");--> statement-breakpoint
CREATE INDEX "states_expires_at_idx" ON "states" USING btree ("expires_at");--> statement-breakpoint
CREATE INDEX "step_executions_execution_id_started_at_idx" ON "step_executions" USING btree ("execution_id","started_at");--> statement-breakpoint
CREATE INDEX "step_executions_parent_step_id_idx" ON "step_executions" USING btree ("parent_step_id");--> statement-breakpoint
CREATE UNIQUE INDEX "templates_namespace_name_key" ON "templates" USING btree ("namespace","name");--> statement-breakpoint
CREATE UNIQUE INDEX "webhooks_path_key" ON "webhooks" USING btree ("path");--> statement-breakpoint
CREATE UNIQUE INDEX "webhooks_path_http_method_key" ON "webhooks" USING btree ("path","http_method");--> statement-breakpoint
CREATE INDEX "webhooks_user_id_idx" ON "webhooks" USING btree ("user_id");