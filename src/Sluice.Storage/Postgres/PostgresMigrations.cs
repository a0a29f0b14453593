using Sluice.Storage.Sql;

namespace Sluice.Storage.Postgres;

/// <summary>The PostgreSQL schema, as ordered migrations. Never edit a released step: add a new one.</summary>
internal static class PostgresMigrations
{
    public const string CreateTable =
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at_ms BIGINT NOT NULL)";

    public static IReadOnlyList<Migration> All { get; } =
    [
        new(1, "tenancy, keys, credits and jobs", """
            CREATE TABLE organizations (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                created_at_ms BIGINT NOT NULL
            );
            CREATE TABLE teams (
                id TEXT PRIMARY KEY,
                organization_id TEXT NOT NULL REFERENCES organizations (id),
                name TEXT NOT NULL,
                credits_allocated BIGINT NOT NULL,
                credits_remaining BIGINT NOT NULL CHECK (credits_remaining >= 0),
                model_groups TEXT NOT NULL,
                rpm BIGINT,
                tpm BIGINT,
                max_streams BIGINT,
                created_at_ms BIGINT NOT NULL,
                UNIQUE (organization_id, name)
            );
            CREATE TABLE virtual_keys (
                id TEXT PRIMARY KEY,
                team_id TEXT NOT NULL REFERENCES teams (id),
                name TEXT NOT NULL,
                prefix TEXT NOT NULL,
                secret_hash TEXT NOT NULL UNIQUE,
                created_at_ms BIGINT NOT NULL,
                expires_at_ms BIGINT,
                revoked_at_ms BIGINT,
                allowed_models TEXT NOT NULL,
                allowed_groups TEXT NOT NULL,
                rpm BIGINT,
                tpm BIGINT,
                max_streams BIGINT
            );
            CREATE INDEX virtual_keys_team ON virtual_keys (team_id);
            CREATE TABLE jobs (
                id TEXT PRIMARY KEY,
                team_id TEXT NOT NULL REFERENCES teams (id),
                key_id TEXT REFERENCES virtual_keys (id),
                status TEXT NOT NULL CHECK (status IN ('created', 'completed', 'failed')),
                charge TEXT NOT NULL CHECK (charge IN ('pending', 'charged', 'not_billable', 'insufficient_credits')),
                call_count BIGINT NOT NULL,
                failed_calls BIGINT NOT NULL,
                error TEXT,
                created_at_ms BIGINT NOT NULL,
                completed_at_ms BIGINT
            );
            CREATE INDEX jobs_team_created ON jobs (team_id, created_at_ms);
            CREATE TABLE job_calls (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                job_id TEXT NOT NULL REFERENCES jobs (id),
                model TEXT NOT NULL,
                prompt_tokens BIGINT NOT NULL,
                completion_tokens BIGINT NOT NULL,
                status TEXT NOT NULL,
                latency_ms DOUBLE PRECISION NOT NULL,
                created_at_ms BIGINT NOT NULL
            );
            CREATE INDEX job_calls_job ON job_calls (job_id);
            CREATE TABLE credit_transactions (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                team_id TEXT NOT NULL REFERENCES teams (id),
                amount BIGINT NOT NULL,
                reason TEXT NOT NULL,
                job_id TEXT REFERENCES jobs (id),
                balance_after BIGINT NOT NULL CHECK (balance_after >= 0),
                created_at_ms BIGINT NOT NULL
            );
            CREATE INDEX credit_transactions_team ON credit_transactions (team_id, id);
            CREATE UNIQUE INDEX credit_transactions_one_per_job ON credit_transactions (job_id) WHERE job_id IS NOT NULL;
            CREATE FUNCTION sluice_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
            END;
            $$;
            CREATE TRIGGER credit_transactions_append_only BEFORE UPDATE OR DELETE ON credit_transactions
                FOR EACH ROW EXECUTE FUNCTION sluice_append_only();
            """),
        new(2, "usage ledger and rate limits", """
            CREATE TABLE usage_records (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                team_id TEXT NOT NULL REFERENCES teams (id),
                key_id TEXT,
                job_id TEXT,
                request_id TEXT,
                model TEXT NOT NULL,
                prompt_tokens BIGINT NOT NULL,
                completion_tokens BIGINT NOT NULL,
                ttft_ms DOUBLE PRECISION,
                duration_ms DOUBLE PRECISION NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('completed', 'failed', 'abandoned')),
                created_at_ms BIGINT NOT NULL
            );
            CREATE INDEX usage_records_team ON usage_records (team_id, id);
            CREATE TRIGGER usage_records_append_only BEFORE UPDATE OR DELETE ON usage_records
                FOR EACH ROW EXECUTE FUNCTION sluice_append_only();
            CREATE TABLE rate_counters (
                key TEXT NOT NULL,
                window_start_ms BIGINT NOT NULL,
                used BIGINT NOT NULL,
                expires_at_ms BIGINT NOT NULL,
                PRIMARY KEY (key, window_start_ms)
            );
            CREATE INDEX rate_counters_expiry ON rate_counters (expires_at_ms);
            CREATE TABLE concurrency_slots (
                lease_id TEXT PRIMARY KEY,
                key TEXT NOT NULL,
                acquired_at_ms BIGINT NOT NULL,
                expires_at_ms BIGINT NOT NULL
            );
            CREATE INDEX concurrency_slots_key ON concurrency_slots (key, expires_at_ms);
            """),
        new(3, "model groups", """
            CREATE TABLE model_groups (
                name TEXT PRIMARY KEY,
                display_name TEXT,
                description TEXT,
                models TEXT NOT NULL,
                created_at_ms BIGINT NOT NULL
            );
            """),
        new(4, "chat sessions", """
            CREATE TABLE sessions (
                id TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                key_id TEXT,
                title TEXT,
                model TEXT,
                system_prompt TEXT,
                max_context_tokens BIGINT NOT NULL,
                metadata TEXT NOT NULL,
                message_count BIGINT NOT NULL,
                created_at_ms BIGINT NOT NULL,
                updated_at_ms BIGINT NOT NULL
            );
            CREATE INDEX sessions_owner ON sessions (owner, updated_at_ms, id);
            CREATE TABLE session_messages (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
                role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
                content TEXT NOT NULL,
                truncated BIGINT NOT NULL,
                finish_reason TEXT,
                prompt_tokens BIGINT,
                completion_tokens BIGINT,
                error TEXT,
                created_at_ms BIGINT NOT NULL
            );
            CREATE INDEX session_messages_session ON session_messages (session_id, id);
            """),
        new(5, "stored responses", """
            CREATE TABLE responses (
                id TEXT PRIMARY KEY,
                owner TEXT NOT NULL,
                key_id TEXT,
                model TEXT NOT NULL,
                previous_response_id TEXT,
                response TEXT NOT NULL,
                conversation TEXT NOT NULL,
                created_at_ms BIGINT NOT NULL
            );
            CREATE INDEX responses_owner ON responses (owner, created_at_ms);
            """),
        new(6, "gateway instances", """
            CREATE TABLE gateway_instances (
                id TEXT PRIMARY KEY,
                internal_url TEXT NOT NULL,
                started_at_ms BIGINT NOT NULL,
                heartbeat_at_ms BIGINT NOT NULL
            );
            """),
        new(7, "open jobs hold credits", """
            CREATE INDEX jobs_team_open ON jobs (team_id, created_at_ms) WHERE status = 'created';
            """),
        new(8, "session windows", """
            ALTER TABLE session_messages ADD COLUMN context_tokens BIGINT NOT NULL DEFAULT 0;
            UPDATE session_messages SET context_tokens = LENGTH(content) / 4 + 3 WHERE NOT (truncated = 1 AND content = '');
            CREATE INDEX session_messages_window ON session_messages (session_id, id, context_tokens);
            """),
    ];
}
