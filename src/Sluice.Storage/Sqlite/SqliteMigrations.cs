using Sluice.Storage.Sql;

namespace Sluice.Storage.Sqlite;

/// <summary>The SQLite schema, as ordered migrations. Never edit a released step: add a new one.</summary>
internal static class SqliteMigrations
{
    public const string CreateTable =
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at_ms INTEGER NOT NULL)";

    public static IReadOnlyList<Migration> All { get; } =
    [
        new(1, "tenancy, keys, credits and jobs", """
            CREATE TABLE organizations (
                id TEXT PRIMARY KEY,
                name TEXT NOT NULL UNIQUE,
                created_at_ms INTEGER NOT NULL
            );
            CREATE TABLE teams (
                id TEXT PRIMARY KEY,
                organization_id TEXT NOT NULL REFERENCES organizations (id),
                name TEXT NOT NULL,
                credits_allocated INTEGER NOT NULL,
                credits_remaining INTEGER NOT NULL CHECK (credits_remaining >= 0),
                model_groups TEXT NOT NULL,
                rpm INTEGER,
                tpm INTEGER,
                max_streams INTEGER,
                created_at_ms INTEGER NOT NULL,
                UNIQUE (organization_id, name)
            );
            CREATE TABLE virtual_keys (
                id TEXT PRIMARY KEY,
                team_id TEXT NOT NULL REFERENCES teams (id),
                name TEXT NOT NULL,
                prefix TEXT NOT NULL,
                secret_hash TEXT NOT NULL UNIQUE,
                created_at_ms INTEGER NOT NULL,
                expires_at_ms INTEGER,
                revoked_at_ms INTEGER,
                allowed_models TEXT NOT NULL,
                allowed_groups TEXT NOT NULL,
                rpm INTEGER,
                tpm INTEGER,
                max_streams INTEGER
            );
            CREATE INDEX virtual_keys_team ON virtual_keys (team_id);
            CREATE TABLE jobs (
                id TEXT PRIMARY KEY,
                team_id TEXT NOT NULL REFERENCES teams (id),
                key_id TEXT REFERENCES virtual_keys (id),
                status TEXT NOT NULL CHECK (status IN ('created', 'completed', 'failed')),
                charge TEXT NOT NULL CHECK (charge IN ('pending', 'charged', 'not_billable', 'insufficient_credits')),
                call_count INTEGER NOT NULL,
                failed_calls INTEGER NOT NULL,
                error TEXT,
                created_at_ms INTEGER NOT NULL,
                completed_at_ms INTEGER
            );
            CREATE INDEX jobs_team_created ON jobs (team_id, created_at_ms);
            CREATE TABLE job_calls (
                id INTEGER PRIMARY KEY,
                job_id TEXT NOT NULL REFERENCES jobs (id),
                model TEXT NOT NULL,
                prompt_tokens INTEGER NOT NULL,
                completion_tokens INTEGER NOT NULL,
                status TEXT NOT NULL,
                latency_ms REAL NOT NULL,
                created_at_ms INTEGER NOT NULL
            );
            CREATE INDEX job_calls_job ON job_calls (job_id);
            CREATE TABLE credit_transactions (
                id INTEGER PRIMARY KEY,
                team_id TEXT NOT NULL REFERENCES teams (id),
                amount INTEGER NOT NULL,
                reason TEXT NOT NULL,
                job_id TEXT REFERENCES jobs (id),
                balance_after INTEGER NOT NULL CHECK (balance_after >= 0),
                created_at_ms INTEGER NOT NULL
            );
            CREATE INDEX credit_transactions_team ON credit_transactions (team_id, id);
            CREATE UNIQUE INDEX credit_transactions_one_per_job ON credit_transactions (job_id) WHERE job_id IS NOT NULL;
            CREATE TRIGGER credit_transactions_no_update BEFORE UPDATE ON credit_transactions
            BEGIN SELECT RAISE(ABORT, 'credit_transactions is append-only'); END;
            CREATE TRIGGER credit_transactions_no_delete BEFORE DELETE ON credit_transactions
            BEGIN SELECT RAISE(ABORT, 'credit_transactions is append-only'); END;
            """),
        new(2, "usage ledger and rate limits", """
            CREATE TABLE usage_records (
                id INTEGER PRIMARY KEY,
                team_id TEXT NOT NULL REFERENCES teams (id),
                key_id TEXT,
                job_id TEXT,
                request_id TEXT,
                model TEXT NOT NULL,
                prompt_tokens INTEGER NOT NULL,
                completion_tokens INTEGER NOT NULL,
                ttft_ms REAL,
                duration_ms REAL NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('completed', 'failed', 'abandoned')),
                created_at_ms INTEGER NOT NULL
            );
            CREATE INDEX usage_records_team ON usage_records (team_id, id);
            CREATE TRIGGER usage_records_no_update BEFORE UPDATE ON usage_records
            BEGIN SELECT RAISE(ABORT, 'usage_records is append-only'); END;
            CREATE TRIGGER usage_records_no_delete BEFORE DELETE ON usage_records
            BEGIN SELECT RAISE(ABORT, 'usage_records is append-only'); END;
            CREATE TABLE rate_counters (
                key TEXT NOT NULL,
                window_start_ms INTEGER NOT NULL,
                used INTEGER NOT NULL,
                expires_at_ms INTEGER NOT NULL,
                PRIMARY KEY (key, window_start_ms)
            );
            CREATE INDEX rate_counters_expiry ON rate_counters (expires_at_ms);
            CREATE TABLE concurrency_slots (
                lease_id TEXT PRIMARY KEY,
                key TEXT NOT NULL,
                acquired_at_ms INTEGER NOT NULL,
                expires_at_ms INTEGER NOT NULL
            );
            CREATE INDEX concurrency_slots_key ON concurrency_slots (key, expires_at_ms);
            """),
        new(3, "model groups", """
            CREATE TABLE model_groups (
                name TEXT PRIMARY KEY,
                display_name TEXT,
                description TEXT,
                models TEXT NOT NULL,
                created_at_ms INTEGER NOT NULL
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
                max_context_tokens INTEGER NOT NULL,
                metadata TEXT NOT NULL,
                message_count INTEGER NOT NULL,
                created_at_ms INTEGER NOT NULL,
                updated_at_ms INTEGER NOT NULL
            );
            CREATE INDEX sessions_owner ON sessions (owner, updated_at_ms, id);
            CREATE TABLE session_messages (
                id INTEGER PRIMARY KEY,
                session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
                role TEXT NOT NULL CHECK (role IN ('user', 'assistant')),
                content TEXT NOT NULL,
                truncated INTEGER NOT NULL,
                finish_reason TEXT,
                prompt_tokens INTEGER,
                completion_tokens INTEGER,
                error TEXT,
                created_at_ms INTEGER NOT NULL
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
                created_at_ms INTEGER NOT NULL
            );
            CREATE INDEX responses_owner ON responses (owner, created_at_ms);
            """),
        new(6, "gateway instances", """
            -- Kept in step with PostgreSQL's numbering; a SQLite store serves one process, so the table stays empty.
            CREATE TABLE gateway_instances (
                id TEXT PRIMARY KEY,
                internal_url TEXT NOT NULL,
                started_at_ms INTEGER NOT NULL,
                heartbeat_at_ms INTEGER NOT NULL
            );
            """),
        new(7, "open jobs hold credits", """
            CREATE INDEX jobs_team_open ON jobs (team_id, created_at_ms) WHERE status = 'created';
            """),
        new(8, "session windows", """
            ALTER TABLE session_messages ADD COLUMN context_tokens INTEGER NOT NULL DEFAULT 0;
            UPDATE session_messages SET context_tokens = LENGTH(content) / 4 + 3 WHERE NOT (truncated = 1 AND content = '');
            CREATE INDEX session_messages_window ON session_messages (session_id, id, context_tokens);
            """),
    ];
}
