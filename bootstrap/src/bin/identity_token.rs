//! `concert-identity-token`: mints an HS256 identity token for trying `IDENTITY_MODE=jwt` (the
//! README's journey, manual tests). A real deployment gets its tokens from its identity system;
//! this tool reads the same settings as the server, so a token it mints verifies there.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use concert_bootstrap::config::read_secret_file;
use concert_identity::mint::{MintClaims, mint_hs256};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Parser)]
#[command(
    name = "concert-identity-token",
    about = "Mint an HS256 identity token for a user"
)]
struct Args {
    /// The user the token vouches for (its `sub`).
    #[arg(long)]
    sub: Uuid,
    /// The HS256 secret the server verifies with.
    #[arg(long, env = "IDENTITY_JWT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// A file holding the secret (instead of `--secret`).
    #[arg(long, env = "IDENTITY_JWT_SECRET_FILE")]
    secret_file: Option<PathBuf>,
    #[arg(long, env = "IDENTITY_ISSUER")]
    issuer: String,
    #[arg(long, env = "IDENTITY_AUDIENCE")]
    audience: String,
    /// How long the token is valid.
    #[arg(long, default_value_t = 3600)]
    ttl_seconds: i64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let secret = match (args.secret, args.secret_file) {
        (Some(secret), _) => secret.into_bytes(),
        (None, Some(path)) => read_secret_file(&path)?,
        (None, None) => anyhow::bail!("give the secret: --secret or IDENTITY_JWT_SECRET(_FILE)"),
    };
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let token = mint_hs256(
        &secret,
        &MintClaims {
            sub: args.sub.to_string(),
            iss: args.issuer,
            aud: args.audience,
            exp: now + args.ttl_seconds,
            nbf: None,
            iat: now,
        },
    )
    .context("minting the token")?;
    writeln!(std::io::stdout().lock(), "{token}")?;
    Ok(())
}
