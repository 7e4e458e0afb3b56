//! Why a connection to PostgreSQL could not be secured, told apart from
//! the driver's errors at connect time (ADR 0040).
//!
//! The URL's `sslmode` decides (libpq's names, as sqlx reads them):
//! `disable` never encrypts; `prefer` (the default) encrypts when the
//! server offers it, without checking its certificate; `require` insists
//! on encryption, without checking the certificate; `verify-ca` also
//! checks that a trusted authority signed it (the platform's roots and
//! `sslrootcert`); `verify-full` also checks that it was issued for the
//! host name of the URL. Encryption needs the feature `postgres-tls`
//! (rustls with the *ring* provider).

use sqlx::postgres::{PgConnectOptions, PgSslMode};

/// Why [`PgStore::connect`](super::PgStore::connect) could not open a
/// secured connection: a configuration to fix, not an outage to wait out.
/// It arrives inside [`StoreError::Backend`](orchestrix::StoreError::Backend);
/// downcast the source to tell the cases apart.
///
/// ```
/// use orchestrix::StoreError;
/// use orchestrix_adapters::postgres::PgTlsError;
///
/// fn explain(error: &StoreError) -> Option<&PgTlsError> {
///     match error {
///         StoreError::Backend(source) => source.downcast_ref::<PgTlsError>(),
///         _ => None,
///     }
/// }
/// # assert!(explain(&StoreError::InvalidInput("x".into())).is_none());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PgTlsError {
    /// The URL asks for encryption, and this build cannot encrypt.
    #[error(
        "the PostgreSQL URL asks for TLS (sslmode={mode}), but orchestrix-adapters was built without TLS: \
         enable its feature `postgres-tls`"
    )]
    FeatureMissing {
        /// The `sslmode` asked for.
        mode: String,
    },
    /// The URL requires encryption, and the server does not offer it.
    #[error(
        "the PostgreSQL server at {host} does not offer TLS, and the URL requires it (sslmode={mode}): \
         turn `ssl` on in the server's configuration, or lower sslmode"
    )]
    ServerWithoutTls {
        /// The host of the URL.
        host: String,
        /// The `sslmode` asked for.
        mode: String,
    },
    /// `verify-ca` or `verify-full`: no trusted authority signed the
    /// server's certificate.
    #[error(
        "the certificate of the PostgreSQL server at {host} is not signed by a trusted certificate authority \
         ({detail}): name the authority that signed it with `sslrootcert=/path/to/ca.pem` in the URL"
    )]
    UntrustedCertificate {
        /// The host of the URL.
        host: String,
        /// What the TLS library said.
        detail: String,
    },
    /// `verify-full`: the certificate was not issued for the URL's host
    /// name.
    #[error(
        "the certificate of the PostgreSQL server is not valid for the host name `{host}` ({detail}): connect \
         with a name the certificate was issued for (its subject alternative names)"
    )]
    WrongHostName {
        /// The host of the URL.
        host: String,
        /// What the TLS library said.
        detail: String,
    },
    /// `verify-ca` or `verify-full`: the certificate was refused for
    /// another reason (expired, not yet valid, revoked, badly signed).
    #[error("the certificate of the PostgreSQL server at {host} was refused: {detail}")]
    BadCertificate {
        /// The host of the URL.
        host: String,
        /// What the TLS library said.
        detail: String,
    },
    /// The server accepts only encrypted connections (its `pg_hba.conf`
    /// has `hostssl` lines only), and the URL did not encrypt.
    #[error(
        "the PostgreSQL server at {host} accepts only encrypted connections and this one was not ({detail}): \
         add `sslmode=require` (or `verify-full` with `sslrootcert`) to the URL{hint}",
        hint = feature_hint(*.build_without_tls)
    )]
    EncryptionRequired {
        /// The host of the URL.
        host: String,
        /// What the server said.
        detail: String,
        /// This build cannot encrypt: the message names the feature
        /// `postgres-tls` too.
        build_without_tls: bool,
    },
}

fn feature_hint(build_without_tls: bool) -> &'static str {
    if build_without_tls {
        ", and enable the feature `postgres-tls` of orchestrix-adapters"
    } else {
        ""
    }
}

/// Whether this build can encrypt connections to PostgreSQL.
pub(crate) const TLS: bool = cfg!(feature = "postgres-tls");

/// The `sslmode` name of `mode`, as the URL writes it.
fn mode_name(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
    }
}

/// Refuses, before connecting, a URL that requires encryption in a build
/// that cannot encrypt (the driver's own message does not name the
/// feature).
///
/// For `verify-ca`, sqlx builds its certificate verifier on rustls's
/// process-wide default provider, which rustls cannot pick by itself in a
/// program that compiles both of its providers (*ring* and aws-lc-rs, as
/// reqwest's default brings): it would panic. So when the program has
/// installed none, *ring* (the provider of every other mode) is installed
/// as the default; a program that wants another installs it first.
pub(crate) fn check_options(options: &PgConnectOptions) -> Result<(), PgTlsError> {
    let mode = options.get_ssl_mode();
    let required = matches!(mode, PgSslMode::Require | PgSslMode::VerifyCa | PgSslMode::VerifyFull);
    if required && !TLS {
        return Err(PgTlsError::FeatureMissing { mode: mode_name(mode).to_owned() });
    }
    #[cfg(feature = "postgres-tls")]
    if matches!(mode, PgSslMode::VerifyCa) && rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may install one meanwhile: theirs wins, fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    Ok(())
}

/// The TLS reason of a failed connection, if it has one.
pub(crate) fn classify(error: &sqlx::Error, options: &PgConnectOptions) -> Option<PgTlsError> {
    let host = options.get_host().to_owned();
    let mode = mode_name(options.get_ssl_mode()).to_owned();
    if let Some(db) = error.as_database_error() {
        // 28000: invalid authorization; the server names the missing
        // encryption in its message when only `hostssl` lines match.
        let message = db.message();
        if db.code().as_deref() == Some("28000") && message.contains("no encryption") {
            return Some(PgTlsError::EncryptionRequired { host, detail: message.to_owned(), build_without_tls: !TLS });
        }
        return None;
    }
    if let sqlx::Error::Tls(source) = error {
        if source.to_string() == "server does not support TLS" {
            return Some(PgTlsError::ServerWithoutTls { host, mode });
        }
    }
    certificate_error(error, host)
}

#[cfg(feature = "postgres-tls")]
fn certificate_error(error: &sqlx::Error, host: String) -> Option<PgTlsError> {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(reason) = find_rustls(error)? else { return None };
    let detail = reason.to_string();
    Some(match reason {
        C::UnknownIssuer => PgTlsError::UntrustedCertificate { host, detail },
        C::NotValidForName | C::NotValidForNameContext { .. } => PgTlsError::WrongHostName { host, detail },
        _ => PgTlsError::BadCertificate { host, detail },
    })
}

#[cfg(not(feature = "postgres-tls"))]
fn certificate_error(_: &sqlx::Error, _: String) -> Option<PgTlsError> {
    None
}

/// The rustls error in `error`'s chain of sources, looking inside I/O
/// errors too (their `source` skips the error they wrap).
#[cfg(feature = "postgres-tls")]
fn find_rustls(error: &sqlx::Error) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = next {
        if let Some(found) = current.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(inner) = current.downcast_ref::<std::io::Error>().and_then(std::io::Error::get_ref) {
            if let Some(found) = inner.downcast_ref::<rustls::Error>() {
                return Some(found);
            }
        }
        next = current.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn a_url_that_requires_tls_is_refused_by_a_build_without_it() {
        for mode in ["require", "verify-ca", "verify-full"] {
            let options = PgConnectOptions::from_str(&format!("postgres://u@db.example/x?sslmode={mode}")).unwrap();
            let checked = check_options(&options);
            if TLS {
                assert_eq!(checked, Ok(()));
            } else {
                assert_eq!(checked, Err(PgTlsError::FeatureMissing { mode: mode.to_owned() }));
                assert!(checked.unwrap_err().to_string().contains("`postgres-tls`"));
            }
        }
        for mode in ["disable", "prefer"] {
            let options = PgConnectOptions::from_str(&format!("postgres://u@db.example/x?sslmode={mode}")).unwrap();
            assert_eq!(check_options(&options), Ok(()), "{mode}");
        }
    }

    #[test]
    fn the_messages_say_what_to_do() {
        let hint = |build_without_tls| {
            PgTlsError::EncryptionRequired { host: "db".into(), detail: "no encryption".into(), build_without_tls }
                .to_string()
        };
        assert!(hint(true).ends_with("enable the feature `postgres-tls` of orchestrix-adapters"));
        assert!(hint(false).ends_with("to the URL"));
        let untrusted = PgTlsError::UntrustedCertificate { host: "db".into(), detail: "UnknownIssuer".into() };
        assert!(untrusted.to_string().contains("sslrootcert="));
    }
}
