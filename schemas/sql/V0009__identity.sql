-- Identity of the people whose data the gateway serves (gateway/Identity): accounts, refresh tokens, and who owns
-- each processed CGM dataset. Passwords are stored only as ASP.NET Core Identity PBKDF2 hashes, refresh tokens only as
-- SHA-256 digests: a copy of this schema lets nobody sign in.
CREATE SCHEMA IF NOT EXISTS identity;

-- user_id is the id every per-user endpoint takes (weights, CGM, forecasts): 32 hex digits, inside the id rule.
-- email is stored normalised (NFKC, trimmed, lower case, ASCII only), so the unique index is the whole rule
-- "one account per address": two concurrent registrations of one address cannot both insert.
CREATE TABLE IF NOT EXISTS identity.users (
  user_id          text        PRIMARY KEY,
  email            text        NOT NULL CHECK (email = lower(email) AND length(email) BETWEEN 3 AND 254),
  password_hash    text        NOT NULL,
  created_at       timestamptz NOT NULL DEFAULT now(),
  -- Lockout: failures counted from failure_window_start; locked_until set when the count reaches the limit.
  failed_logins    int         NOT NULL DEFAULT 0,
  failure_window_start timestamptz,
  locked_until     timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS users_email ON identity.users (email);

-- Rotating refresh tokens: each is used once (used_at); a used token presented again means it was copied, so its
-- whole family (every token descended from one password sign-in) is revoked.
CREATE TABLE IF NOT EXISTS identity.refresh_tokens (
  token_sha256 bytea       PRIMARY KEY,
  user_id      text        NOT NULL REFERENCES identity.users (user_id) ON DELETE CASCADE,
  family_id    uuid        NOT NULL,
  issued_at    timestamptz NOT NULL DEFAULT now(),
  expires_at   timestamptz NOT NULL,
  used_at      timestamptz,
  revoked_at   timestamptz
);
CREATE INDEX IF NOT EXISTS refresh_tokens_family ON identity.refresh_tokens (family_id);

-- Who may plot a processed dataset: the principals that uploaded it ("user:<user_id>" or "service:<client name>").
-- Identical files from two people share a content-hash handle and so a dataset row, with one owner row each.
CREATE TABLE IF NOT EXISTS cgm.dataset_owners (
  handle text NOT NULL REFERENCES cgm.datasets (handle) ON DELETE CASCADE,
  owner  text NOT NULL,
  PRIMARY KEY (handle, owner)
);
