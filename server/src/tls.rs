//! TLS settings, as Redis 7.0 names them, turned into a rustls server configuration.
//!
//! `tls-port` serves TLS beside (or, with `port 0`, instead of) plain TCP, on every core
//! like the plain port: each core accepts its share and encrypts on the core that owns the
//! connection, on its network ring (`runtime::Stream`). The configuration in force is one
//! `Arc<ServerConfig>` taken at each accept; CONFIG SET of a `tls-*` setting builds a new
//! one from the files and swaps it in, so certificates are reloaded without dropping a
//! connection (those already open keep the session they negotiated), and a setting that
//! does not build leaves the old configuration in force, with Redis's error.
//!
//! Differences from Redis's OpenSSL build, each refused or reported, never silent:
//! - protocols are TLSv1.2 and TLSv1.3 (rustls has nothing older; `tls-protocols` naming
//!   TLSv1 or TLSv1.1 is refused);
//! - `tls-ciphers` (TLS 1.2) and `tls-ciphersuites` (TLS 1.3) take the IANA or OpenSSL
//!   names of the suites rustls offers, separated by `:`; OpenSSL's rule strings (`DEFAULT`,
//!   `!aNULL`, `HIGH`) are refused;
//! - an encrypted `tls-key-file` must be PKCS#8 (`-----BEGIN ENCRYPTED PRIVATE KEY-----`,
//!   what `openssl pkcs8 -topk8` writes); the older `Proc-Type: 4,ENCRYPTED` form is refused
//!   with that command in the message;
//! - `tls-session-cache-timeout` is kept and reported; rustls's session cache evicts by
//!   size (`tls-session-cache-size`), not by age.

use std::sync::{Arc, Mutex};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{NoServerSessionStorage, ServerSessionMemoryCache, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig, SupportedCipherSuite};

/// `tls-auth-clients`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthClients {
    No,
    Yes,
    Optional,
}

impl AuthClients {
    pub fn parse(s: &str) -> Result<AuthClients, String> {
        match s.to_ascii_lowercase().as_str() {
            "no" => Ok(AuthClients::No),
            "yes" => Ok(AuthClients::Yes),
            "optional" => Ok(AuthClients::Optional),
            _ => Err("argument(s) must be one of the following: no, yes, optional".into()),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            AuthClients::No => "no",
            AuthClients::Yes => "yes",
            AuthClients::Optional => "optional",
        }
    }
}

/// The `tls-*` settings (and `metrics-tls`), with Redis's defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub port: u16,
    pub cert_file: String,
    pub key_file: String,
    pub key_file_pass: String,
    pub ca_cert_file: String,
    pub ca_cert_dir: String,
    pub auth_clients: AuthClients,
    pub protocols: String,
    pub ciphers: String,
    pub ciphersuites: String,
    pub prefer_server_ciphers: bool,
    pub session_caching: bool,
    pub session_cache_size: usize,
    pub session_cache_timeout: u64,
    /// The Prometheus endpoint serves HTTPS with the same configuration.
    pub metrics: bool,
    /// `tls-replication`: a replica's link to its primary speaks TLS.
    pub replication: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            port: 0,
            cert_file: String::new(),
            key_file: String::new(),
            key_file_pass: String::new(),
            ca_cert_file: String::new(),
            ca_cert_dir: String::new(),
            auth_clients: AuthClients::Yes,
            protocols: String::new(),
            ciphers: String::new(),
            ciphersuites: String::new(),
            prefer_server_ciphers: false,
            session_caching: true,
            session_cache_size: 20 * 1024,
            session_cache_timeout: 300,
            metrics: false,
            replication: false,
        }
    }
}

impl Settings {
    /// Whether TLS is served at all (a TLS port, or HTTPS metrics).
    pub fn enabled(&self) -> bool {
        self.port != 0 || self.metrics
    }
}

/// The configuration new TLS connections get.
static CURRENT: Mutex<Option<Arc<ServerConfig>>> = Mutex::new(None);

/// The configuration in force for new connections (None when TLS is off).
pub fn current() -> Option<Arc<ServerConfig>> {
    CURRENT.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

/// Turns an accepted connection to TLS with the configuration in force; false (the
/// connection is dropped, and that logged) when that fails.
pub fn start(s: &mut crate::runtime::Stream) -> bool {
    let r = match current() {
        Some(cfg) => s.start_tls(cfg),
        None => Err(std::io::Error::other("no TLS configuration in force")),
    };
    if let Err(e) = &r {
        crate::log::warn(&format!("TLS connection refused: {e}"));
    }
    r.is_ok()
}

/// Builds the configuration `s` describes and puts it in force; on error the previous one
/// stays. Nothing is built when TLS is off.
pub fn install(s: &Settings) -> Result<(), String> {
    let built = if s.enabled() {
        Some(Arc::new(build(s)?))
    } else {
        None
    };
    *CURRENT.lock().unwrap_or_else(|p| p.into_inner()) = built;
    Ok(())
}

/// The rustls server configuration for `s`, or what is wrong with it.
pub fn build(s: &Settings) -> Result<ServerConfig, String> {
    if s.cert_file.is_empty() || s.key_file.is_empty() {
        return Err("tls-cert-file and tls-key-file must be set to serve TLS".into());
    }
    let provider = Arc::new(provider(s)?);
    let versions = versions(&s.protocols)?;
    let certs = read_certs(&s.cert_file)?;
    let key = read_key(&s.key_file, &s.key_file_pass)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("tls-protocols / tls-ciphers: {e}"))?;
    let builder = match s.auth_clients {
        AuthClients::No => builder.with_no_client_auth(),
        auth => {
            let roots = Arc::new(read_roots(&s.ca_cert_file, &s.ca_cert_dir)?);
            let v = WebPkiClientVerifier::builder_with_provider(roots, provider);
            let v = if auth == AuthClients::Optional {
                v.allow_unauthenticated()
            } else {
                v
            };
            builder.with_client_cert_verifier(
                v.build()
                    .map_err(|e| format!("client certificate verification: {e}"))?,
            )
        }
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls-cert-file / tls-key-file: {e}"))?;
    cfg.ignore_client_order = s.prefer_server_ciphers;
    cfg.session_storage = if s.session_caching && s.session_cache_size > 0 {
        ServerSessionMemoryCache::new(s.session_cache_size)
    } else {
        Arc::new(NoServerSessionStorage {})
    };
    Ok(cfg)
}

/// The rustls client configuration of a replica's link under `tls-replication yes`, as
/// Redis's client context: the primary's certificate chain is verified against
/// `tls-ca-cert-file`/`tls-ca-cert-dir` (its name is not: Redis sets no host to check),
/// and `tls-cert-file`/`tls-key-file`, when set, are the client certificate.
pub fn client_config(s: &Settings) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(provider(s)?);
    let roots = Arc::new(read_roots(&s.ca_cert_file, &s.ca_cert_dir)?);
    let webpki =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| format!("server certificate verification: {e}"))?;
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions(&s.protocols)?)
        .map_err(|e| format!("tls-protocols / tls-ciphers: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ChainOnly(webpki)));
    if s.cert_file.is_empty() || s.key_file.is_empty() {
        return Ok(builder.with_no_client_auth());
    }
    let certs = read_certs(&s.cert_file)?;
    let key = read_key(&s.key_file, &s.key_file_pass)?;
    builder
        .with_client_auth_cert(certs, key)
        .map_err(|e| format!("tls-cert-file / tls-key-file: {e}"))
}

/// A primary's certificate verified as OpenSSL's `SSL_VERIFY_PEER` without a host does:
/// its chain to a trusted CA, dates and usage, but not the name it was issued for.
#[derive(Debug)]
struct ChainOnly(Arc<rustls::client::WebPkiServerVerifier>);

impl rustls::client::danger::ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls::pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(rustls::client::danger::ServerCertVerified::assertion()),
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

fn versions(protocols: &str) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, String> {
    let words: Vec<String> = protocols
        .split_whitespace()
        .map(|w| w.to_ascii_lowercase())
        .collect();
    if words.is_empty() {
        return Ok(vec![&rustls::version::TLS13, &rustls::version::TLS12]);
    }
    let mut v = Vec::new();
    for w in &words {
        match w.as_str() {
            "tlsv1.3" => v.push(&rustls::version::TLS13),
            "tlsv1.2" => v.push(&rustls::version::TLS12),
            "tlsv1" | "tlsv1.1" => {
                return Err(format!(
                    "tls-protocols: percore serves TLSv1.2 and TLSv1.3 only, not {w}"
                ))
            }
            _ => return Err(format!("tls-protocols: unknown protocol '{w}'")),
        }
    }
    Ok(v)
}

/// The ring provider with the suites `tls-ciphers` (TLS 1.2) and `tls-ciphersuites`
/// (TLS 1.3) allow; empty settings keep rustls's defaults for that version.
fn provider(s: &Settings) -> Result<CryptoProvider, String> {
    let mut p = rustls::crypto::ring::default_provider();
    let all = p.cipher_suites.clone();
    let pick = |list: &str, tls13: bool, what: &str| -> Result<Vec<SupportedCipherSuite>, String> {
        let of_version = all
            .iter()
            .filter(|cs| matches!(cs, SupportedCipherSuite::Tls13(_)) == tls13);
        if list.trim().is_empty() {
            return Ok(of_version.copied().collect());
        }
        let mut out = Vec::new();
        for name in list.split(':').map(str::trim).filter(|n| !n.is_empty()) {
            let found = of_version
                .clone()
                .find(|cs| suite_names(cs).iter().any(|n| n.eq_ignore_ascii_case(name)));
            match found {
                Some(cs) => out.push(*cs),
                None => {
                    let known: Vec<String> = of_version
                        .clone()
                        .map(|cs| suite_names(cs)[1].to_string())
                        .collect();
                    return Err(format!(
                        "{what}: '{name}' is not a suite percore offers (one of: {})",
                        known.join(":")
                    ));
                }
            }
        }
        Ok(out)
    };
    let mut suites = pick(&s.ciphersuites, true, "tls-ciphersuites")?;
    suites.extend(pick(&s.ciphers, false, "tls-ciphers")?);
    p.cipher_suites = suites;
    Ok(p)
}

/// A suite's IANA name and the OpenSSL one.
fn suite_names(cs: &SupportedCipherSuite) -> [String; 2] {
    let iana = format!("{:?}", cs.suite());
    let openssl = match iana.as_str() {
        "TLS13_AES_128_GCM_SHA256" => "TLS_AES_128_GCM_SHA256",
        "TLS13_AES_256_GCM_SHA384" => "TLS_AES_256_GCM_SHA384",
        "TLS13_CHACHA20_POLY1305_SHA256" => "TLS_CHACHA20_POLY1305_SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => "ECDHE-RSA-CHACHA20-POLY1305",
        other => other,
    };
    let iana = iana.replacen("TLS13_", "TLS_", 1);
    [iana, openssl.to_string()]
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("reading certificates from '{path}': {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("reading certificates from '{path}': {e}"))?;
    if certs.is_empty() {
        return Err(format!("'{path}' holds no PEM certificate"));
    }
    Ok(certs)
}

fn read_key(path: &str, pass: &str) -> Result<PrivateKeyDer<'static>, String> {
    let pem =
        std::fs::read_to_string(path).map_err(|e| format!("reading tls-key-file '{path}': {e}"))?;
    if pem.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        if pass.is_empty() {
            return Err(format!(
                "'{path}' is encrypted: set tls-key-file-pass to its passphrase"
            ));
        }
        let (_, doc) = pkcs8::SecretDocument::from_pem(&pem)
            .map_err(|e| format!("reading tls-key-file '{path}': {e}"))?;
        let enc = pkcs8::EncryptedPrivateKeyInfo::try_from(doc.as_bytes())
            .map_err(|e| format!("reading tls-key-file '{path}': {e}"))?;
        let plain = enc.decrypt(pass).map_err(|_| {
            format!("cannot decrypt '{path}' with tls-key-file-pass (wrong passphrase?)")
        })?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            plain.as_bytes().to_vec(),
        )));
    }
    if pem.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(format!(
            "'{path}' is encrypted in the legacy PEM form: convert it to PKCS#8 with `openssl pkcs8 -topk8 -in {path} -out NEW.key`"
        ));
    }
    PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("reading a private key from '{path}': {e}"))
}

/// Trusted CAs for client certificates: the file's and every certificate in the
/// directory's files.
fn read_roots(file: &str, dir: &str) -> Result<RootCertStore, String> {
    if file.is_empty() && dir.is_empty() {
        return Err("Either tls-ca-cert-file or tls-ca-cert-dir must be specified when tls-auth-clients is yes or optional".into());
    }
    let mut roots = RootCertStore::empty();
    let mut add = |path: &str, strict: bool| -> Result<(), String> {
        let certs = match read_certs(path) {
            Ok(c) => c,
            Err(_) if !strict => return Ok(()),
            Err(e) => return Err(e),
        };
        for c in certs {
            roots
                .add(c)
                .map_err(|e| format!("CA certificate in '{path}': {e}"))?;
        }
        Ok(())
    };
    if !file.is_empty() {
        add(file, true)?;
    }
    if !dir.is_empty() {
        let entries =
            std::fs::read_dir(dir).map_err(|e| format!("reading tls-ca-cert-dir '{dir}': {e}"))?;
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths.iter().filter(|p| p.is_file()) {
            add(&p.to_string_lossy(), false)?;
        }
    }
    if roots.is_empty() {
        return Err(format!(
            "no CA certificate found in tls-ca-cert-file '{file}' / tls-ca-cert-dir '{dir}'"
        ));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_are_parsed_and_old_ones_refused() {
        assert_eq!(versions("").unwrap().len(), 2);
        assert_eq!(versions("TLSv1.2").unwrap().len(), 1);
        assert_eq!(versions("tlsv1.2 TLSv1.3").unwrap().len(), 2);
        assert!(versions("TLSv1.1 TLSv1.2")
            .unwrap_err()
            .contains("TLSv1.2 and TLSv1.3 only"));
        assert!(versions("SSLv3").unwrap_err().contains("unknown"));
    }

    #[test]
    fn suites_are_picked_by_iana_or_openssl_name() {
        let mut s = Settings {
            ciphersuites: "TLS_AES_256_GCM_SHA384".into(),
            ciphers: "ECDHE-RSA-AES128-GCM-SHA256:TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384".into(),
            ..Settings::default()
        };
        let p = provider(&s).unwrap();
        assert_eq!(p.cipher_suites.len(), 3);
        s.ciphers = "HIGH:!aNULL".into();
        assert!(provider(&s).unwrap_err().contains("'HIGH' is not a suite"));
        s.ciphers.clear();
        s.ciphersuites.clear();
        assert_eq!(
            provider(&s).unwrap().cipher_suites.len(),
            rustls::crypto::ring::default_provider().cipher_suites.len()
        );
    }

    #[test]
    fn missing_files_are_named() {
        let s = Settings {
            port: 6380,
            cert_file: "/nonexistent/c.pem".into(),
            key_file: "/nonexistent/k.pem".into(),
            ..Settings::default()
        };
        assert!(build(&s).unwrap_err().contains("/nonexistent/c.pem"));
        assert!(build(&Settings::default())
            .unwrap_err()
            .contains("tls-cert-file and tls-key-file"));
    }
}
