//! TLS: real clients (a rustls client here, redis-cli and redis-benchmark with `--tls`)
//! against `tls-port`, with certificates made for each test (a CA, server and client
//! certificates, and a second CA nobody trusts).

mod common;

use common::{free_port, reply_len, s, Launch, Server, TempDir};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

/// A CA and what it signs, written as PEM files into a test's directory.
struct Pki {
    dir: TempDir,
    ca: rcgen::Certificate,
    ca_key: KeyPair,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        Pki::in_dir(TempDir::new(tag), "ca")
    }

    fn in_dir(dir: TempDir, name: &str) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, format!("percore test {name}"));
        let ca = p.self_signed(&ca_key).unwrap();
        std::fs::write(dir.0.join(format!("{name}.crt")), ca.pem()).unwrap();
        Pki { dir, ca, ca_key }
    }

    /// A certificate `name` signed by this CA (`name.crt`, `name.key`); returns both paths.
    fn issue(&self, name: &str, server: bool) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let sans = if server {
            vec!["localhost".to_string(), "127.0.0.1".to_string()]
        } else {
            Vec::new()
        };
        let mut p = CertificateParams::new(sans).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let cert = p.signed_by(&key, &self.ca, &self.ca_key).unwrap();
        let (c, k) = (
            self.path(&format!("{name}.crt")),
            self.path(&format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    fn path(&self, file: &str) -> String {
        self.dir.0.join(file).to_string_lossy().into_owned()
    }
}

/// A TLS client speaking RESP, one reply at a time.
struct TlsClient {
    tls: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buf: Vec<u8>,
}

fn client_config(ca: &str, cert: Option<(&str, &str)>) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots);
    Arc::new(match cert {
        None => b.with_no_client_auth(),
        Some((c, k)) => b
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(c)
                    .unwrap()
                    .map(|c| c.unwrap())
                    .collect(),
                PrivateKeyDer::from_pem_file(k).unwrap(),
            )
            .unwrap(),
    })
}

impl TlsClient {
    /// Connects and completes the handshake (and, so that a refused client certificate
    /// shows, one PING); the error of whichever failed.
    fn try_connect(port: u16, cfg: Arc<rustls::ClientConfig>) -> std::io::Result<TlsClient> {
        let tcp = TcpStream::connect(("127.0.0.1", port))?;
        tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
        let conn = rustls::ClientConnection::new(cfg, ServerName::try_from("localhost").unwrap())
            .map_err(std::io::Error::other)?;
        let mut c = TlsClient {
            tls: rustls::StreamOwned::new(conn, tcp),
            buf: Vec::new(),
        };
        let pong = c.try_q("PING")?;
        if pong != b"+PONG\r\n" {
            return Err(std::io::Error::other(s(&pong)));
        }
        Ok(c)
    }

    fn connect(port: u16, cfg: Arc<rustls::ClientConfig>) -> TlsClient {
        TlsClient::try_connect(port, cfg).expect("TLS connection")
    }

    fn try_q(&mut self, line: &str) -> std::io::Result<Vec<u8>> {
        self.try_send(format!("{line}\r\n").as_bytes())
    }

    fn try_send(&mut self, bytes: &[u8]) -> std::io::Result<Vec<u8>> {
        self.tls.write_all(bytes)?;
        self.tls.flush()?;
        loop {
            if let Some(n) = reply_len(&self.buf) {
                return Ok(self.buf.drain(..n).collect());
            }
            let mut chunk = [0u8; 16384];
            let n = self.tls.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn q(&mut self, line: &str) -> String {
        s(&self.try_q(line).expect("reply"))
    }

    /// The common name of the certificate the server presented.
    fn server_cn(&self) -> String {
        let der = &self.tls.conn.peer_certificates().unwrap()[0];
        // The CN is the last printable string of the subject in these certificates; find
        // it by its name, which is unique in a test.
        let text = String::from_utf8_lossy(der.as_ref()).into_owned();
        ["server-one", "server-two"]
            .into_iter()
            .find(|n| text.contains(n))
            .unwrap_or("?")
            .to_string()
    }
}

/// percore with a TLS port beside its plain one, with `pki`'s CA and a server certificate.
fn start_tls(pki: &Pki, tls_port: u16, extra: &[&str]) -> Server {
    let (cert, key) = pki.issue("server-one", true);
    let ca = pki.path("ca.crt");
    let port = tls_port.to_string();
    let mut args = vec![
        "--tls-port",
        &port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
    ];
    args.extend_from_slice(extra);
    Server::percore(2, &args)
}

#[test]
fn mutual_tls_serves_commands_and_refuses_clients_without_a_good_certificate() {
    let pki = Pki::new("tls-mutual");
    let rogue = Pki::in_dir(TempDir::new("tls-rogue"), "rogue");
    let tls_port = free_port();
    let srv = start_tls(&pki, tls_port, &[]);
    let (cc, ck) = pki.issue("client", false);
    let ca = pki.path("ca.crt");
    let mut c = TlsClient::connect(tls_port, client_config(&ca, Some((&cc, &ck))));
    assert_eq!(c.q("SET k hello"), "+OK\r\n");
    assert_eq!(c.q("GET k"), "$5\r\nhello\r\n");
    // A reply larger than a TLS record and than the ring's receive buffers.
    let big = "x".repeat(300_000);
    let set = common::encode(&[b"SET", b"big", big.as_bytes()]);
    assert_eq!(s(&c.try_send(&set).unwrap()), "+OK\r\n");
    assert_eq!(c.q("GET big"), format!("$300000\r\n{big}\r\n"));
    // The plain port serves the same data.
    let mut plain = srv.client();
    assert_eq!(s(&plain.q("GET k")), "$5\r\nhello\r\n");

    // tls-auth-clients yes (the default): no certificate, or one from another CA, is refused.
    assert!(TlsClient::try_connect(tls_port, client_config(&ca, None)).is_err());
    let (rc, rk) = rogue.issue("intruder", false);
    assert!(TlsClient::try_connect(tls_port, client_config(&ca, Some((&rc, &rk)))).is_err());
    // A client that does not trust the server's CA gives up itself.
    assert!(TlsClient::try_connect(
        tls_port,
        client_config(&rogue.path("rogue.crt"), Some((&cc, &ck)))
    )
    .is_err());
    // Garbage on the TLS port: that connection ends, the others go on.
    let mut raw = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(b"PING\r\nGET k\r\n").unwrap();
    let mut sink = Vec::new();
    let _ = raw.read_to_end(&mut sink);
    assert!(
        !s(&sink).contains("PONG"),
        "plain text answered on the TLS port"
    );
    assert_eq!(c.q("GET k"), "$5\r\nhello\r\n");
}

#[test]
fn tls_auth_clients_optional_and_no() {
    let pki = Pki::new("tls-optional");
    let rogue = Pki::in_dir(TempDir::new("tls-rogue2"), "rogue");
    let ca = pki.path("ca.crt");
    let (cc, ck) = pki.issue("client", false);
    let (rc, rk) = rogue.issue("intruder", false);

    let tls_port = free_port();
    let _srv = start_tls(&pki, tls_port, &["--tls-auth-clients", "optional"]);
    let mut anon = TlsClient::connect(tls_port, client_config(&ca, None));
    assert_eq!(anon.q("ECHO hi"), "$2\r\nhi\r\n");
    let mut known = TlsClient::connect(tls_port, client_config(&ca, Some((&cc, &ck))));
    assert_eq!(known.q("ECHO hi"), "$2\r\nhi\r\n");
    assert!(
        TlsClient::try_connect(tls_port, client_config(&ca, Some((&rc, &rk)))).is_err(),
        "a certificate that does not verify is refused even when optional"
    );

    let tls_port = free_port();
    let _srv = start_tls(&pki, tls_port, &["--tls-auth-clients", "no"]);
    let mut anon = TlsClient::connect(tls_port, client_config(&ca, None));
    assert_eq!(anon.q("DBSIZE"), ":0\r\n");
}

#[test]
fn port_0_serves_tls_only() {
    let pki = Pki::new("tls-only");
    let (cert, key) = pki.issue("server-one", true);
    let (cc, ck) = pki.issue("client", false);
    let ca = pki.path("ca.crt");
    let (plain, tls_port) = (free_port(), free_port());
    let log = pki.dir.0.join("server.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_percore"))
        .args(["--port", "0", "--tls-port", &tls_port.to_string()])
        .args(["--tls-cert-file", &cert, "--tls-key-file", &key])
        .args(["--tls-ca-cert-file", &ca, "--shards", "1"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let cfg = client_config(&ca, Some((&cc, &ck)));
    let mut c = None;
    for _ in 0..200 {
        if let Ok(x) = TlsClient::try_connect(tls_port, cfg.clone()) {
            c = Some(x);
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut c = c.unwrap_or_else(|| {
        let _ = child.kill();
        panic!(
            "no TLS answer: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        )
    });
    assert_eq!(c.q("CONFIG GET port"), "*2\r\n$4\r\nport\r\n$1\r\n0\r\n");
    assert!(
        TcpStream::connect(("127.0.0.1", plain)).is_err(),
        "nothing listens in plain TCP"
    );
    let _ = child.kill();
    let _ = child.wait();

    // Both ports 0: nothing to serve, said so.
    let f = Launch::percore(plain, &["--port", "0"]).try_start().err();
    assert!(f.is_some(), "a server with no port started");
}

#[test]
fn certificates_reload_with_config_set_while_connections_stay() {
    let pki = Pki::new("tls-reload");
    let tls_port = free_port();
    let srv = start_tls(&pki, tls_port, &["--tls-auth-clients", "no"]);
    let ca = pki.path("ca.crt");
    let cfg = client_config(&ca, None);
    let mut old = TlsClient::connect(tls_port, cfg.clone());
    assert_eq!(old.server_cn(), "server-one");

    // Clients keep working through the reloads.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let (cfg, stop) = (cfg.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let mut c = TlsClient::connect(tls_port, cfg.clone());
                    for _ in 0..50 {
                        assert_eq!(c.q(&format!("INCR w{w}")), format!(":{}\r\n", n + 1));
                        n += 1;
                    }
                }
                n
            })
        })
        .collect();
    let (cert2, key2) = pki.issue("server-two", true);
    let (cert1, key1) = (pki.path("server-one.crt"), pki.path("server-one.key"));
    let mut admin = srv.client();
    for round in 0..6 {
        let (c, k) = if round % 2 == 0 {
            (&cert2, &key2)
        } else {
            (&cert1, &key1)
        };
        assert_eq!(
            s(&admin.q(&format!("CONFIG SET tls-cert-file {c} tls-key-file {k}"))),
            "+OK\r\n"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for w in workers {
        assert!(w.join().expect("a client failed during the reloads") > 0);
    }
    assert_eq!(
        TlsClient::connect(tls_port, cfg.clone()).server_cn(),
        "server-one"
    );
    assert_eq!(
        s(&admin.q(&format!(
            "CONFIG SET tls-cert-file {cert2} tls-key-file {key2}"
        ))),
        "+OK\r\n"
    );
    assert_eq!(
        TlsClient::connect(tls_port, cfg.clone()).server_cn(),
        "server-two"
    );
    // The connection opened first is still served.
    assert_eq!(old.q("ECHO still"), "$5\r\nstill\r\n");

    // A file that does not load: Redis's error, and the configuration in force stays.
    assert_eq!(
        s(&admin.q("CONFIG SET tls-cert-file /nonexistent/cert.pem")),
        "-ERR CONFIG SET failed (possibly related to argument 'tls-cert-file') - Unable to update TLS configuration. Check server logs.\r\n"
    );
    assert_eq!(
        s(&admin.q("CONFIG GET tls-cert-file")),
        format!(
            "*2\r\n$13\r\ntls-cert-file\r\n${}\r\n{cert2}\r\n",
            cert2.len()
        )
    );
    assert_eq!(TlsClient::connect(tls_port, cfg).server_cn(), "server-two");
    assert_eq!(
        s(&admin.q("CONFIG SET tls-port 1234")),
        "-ERR CONFIG SET failed (possibly related to argument 'tls-port') - can't set immutable config\r\n"
    );
}

#[test]
fn encrypted_keys_and_bad_settings_are_clear_at_start() {
    let pki = Pki::new("tls-settings");
    let (cert, key) = pki.issue("server-one", true);
    let ca = pki.path("ca.crt");
    let enc = pki.path("enc.key");
    let out = Command::new("openssl")
        .args([
            "pkcs8",
            "-topk8",
            "-in",
            &key,
            "-out",
            &enc,
            "-passout",
            "pass:s3cret",
        ])
        .output()
        .expect("openssl is installed (apt-get install openssl)");
    assert!(out.status.success(), "{}", s(&out.stderr));
    // Starts percore with `extra`; whether it came up (then stopped) and its log.
    let start = |extra: &[&str]| -> (bool, String) {
        let port = free_port();
        let (plain, tls_port) = (port.to_string(), free_port().to_string());
        let mut args = vec![
            "--port",
            &plain,
            "--tls-port",
            &tls_port,
            "--tls-cert-file",
            &cert,
            "--tls-ca-cert-file",
            &ca,
            "--shards",
            "1",
        ];
        args.extend_from_slice(extra);
        let log = pki.dir.0.join(format!("start-{port}.log"));
        match Launch::percore(port, &args).log(&log).try_start() {
            Ok(mut srv) => {
                srv.terminate();
                (true, std::fs::read_to_string(&log).unwrap_or_default())
            }
            Err(f) => (false, f.log),
        }
    };
    let (ok, log) = start(&["--tls-key-file", &enc, "--tls-key-file-pass", "s3cret"]);
    assert!(ok, "{log}");
    let (ok, log) = start(&["--tls-key-file", &enc]);
    assert!(!ok && log.contains("set tls-key-file-pass"), "{log}");
    let (ok, log) = start(&["--tls-key-file", &enc, "--tls-key-file-pass", "wrong"]);
    assert!(!ok && log.contains("wrong passphrase"), "{log}");
    let (ok, log) = start(&["--tls-key-file", &key, "--tls-protocols", "TLSv1.1"]);
    assert!(!ok && log.contains("TLSv1.2 and TLSv1.3 only"), "{log}");
    let (ok, log) = start(&["--tls-key-file", &key, "--tls-ciphers", "HIGH:!aNULL"]);
    assert!(!ok && log.contains("'HIGH' is not a suite"), "{log}");
    let (ok, log) = start(&["--tls-key-file", &key, "--tls-ca-cert-file", ""]);
    assert!(
        !ok && log.contains("tls-ca-cert-file or tls-ca-cert-dir"),
        "{log}"
    );
}

/// redis-cli and redis-benchmark, as users run them, with TLS.
#[test]
fn redis_cli_and_redis_benchmark_over_tls() {
    let Some(_redis) = common::redis_or_skip("redis-cli --tls against percore") else {
        return;
    };
    let pki = Pki::new("tls-cli");
    let tls_port = free_port();
    let _srv = start_tls(&pki, tls_port, &[]);
    let (cc, ck) = pki.issue("client", false);
    let ca = pki.path("ca.crt");
    let port = tls_port.to_string();
    let tls_args = [
        "-p", &port, "--tls", "--cacert", &ca, "--cert", &cc, "--key", &ck,
    ];
    let cli = |args: &[&str]| {
        let out = Command::new("redis-cli")
            .args(tls_args)
            .args(args)
            .output()
            .expect("redis-cli runs");
        s(&out.stdout)
    };
    assert_eq!(cli(&["PING"]), "PONG\n");
    assert_eq!(cli(&["SET", "cli", "v"]), "OK\n");
    assert_eq!(cli(&["GET", "cli"]), "v\n");
    let out = Command::new("redis-benchmark")
        .args(tls_args)
        .args(["-n", "4000", "-c", "8", "-P", "4", "-t", "set,get", "-q"])
        .output()
        .expect("redis-benchmark runs");
    let text = s(&out.stdout);
    assert!(out.status.success(), "{text} {}", s(&out.stderr));
    assert_eq!(text.matches("requests per second").count(), 2, "{text}");
    assert_eq!(
        cli(&["DBSIZE"]),
        "2\n",
        "cli and the benchmark's key:__rand_int__"
    );
    assert_eq!(cli(&["STRLEN", "key:__rand_int__"]), "3\n");
}

/// The tls-* settings' names and defaults as Redis 7.0 reports them.
#[test]
fn tls_settings_read_as_in_redis() {
    let Some(redis) = common::redis_or_skip("TLS settings against redis-server") else {
        return;
    };
    let srv = Server::percore(1, &[]);
    let (mut r, mut p) = (redis.client(), srv.client());
    for name in [
        "tls-port",
        "tls-cert-file",
        "tls-key-file",
        "tls-key-file-pass",
        "tls-ca-cert-file",
        "tls-ca-cert-dir",
        "tls-auth-clients",
        "tls-protocols",
        "tls-ciphers",
        "tls-ciphersuites",
        "tls-prefer-server-ciphers",
        "tls-session-caching",
        "tls-session-cache-size",
        "tls-session-cache-timeout",
        "tls-replication",
        "tls-cluster",
    ] {
        let q = format!("CONFIG GET {name}");
        assert_eq!(s(&p.q(&q)), s(&r.q(&q)), "{name}");
    }
}

/// `metrics-tls yes`: Prometheus scrapes over HTTPS with the same files.
#[test]
fn metrics_over_https() {
    let pki = Pki::new("tls-metrics");
    let (cc, ck) = pki.issue("client", false);
    let ca = pki.path("ca.crt");
    let mport = free_port();
    let m = mport.to_string();
    let tls_port = free_port();
    let _srv = start_tls(
        &pki,
        tls_port,
        &["--metrics-port", &m, "--metrics-tls", "yes"],
    );
    let tcp = TcpStream::connect(("127.0.0.1", mport)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let conn = rustls::ClientConnection::new(
        client_config(&ca, Some((&cc, &ck))),
        ServerName::try_from("localhost").unwrap(),
    )
    .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut body = Vec::new();
    let _ = tls.read_to_end(&mut body);
    let text = s(&body);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{}",
        &text[..text.len().min(200)]
    );
    assert!(text.contains("redis_up 1"), "no redis_up in the scrape");
}

/// A refusal written before the client sends anything (maxclients) reaches a TLS client
/// after the handshake, as Redis sends it.
#[test]
fn refusals_before_any_request_arrive_over_tls() {
    let pki = Pki::new("tls-maxclients");
    let tls_port = free_port();
    let _srv = start_tls(
        &pki,
        tls_port,
        &["--tls-auth-clients", "no", "--maxclients", "1"],
    );
    let cfg = client_config(&pki.path("ca.crt"), None);
    // The start-up probe's connection may still hold the one slot for a moment.
    let mut first = (0..100)
        .find_map(|_| {
            TlsClient::try_connect(tls_port, cfg.clone())
                .map_err(|_| std::thread::sleep(Duration::from_millis(50)))
                .ok()
        })
        .expect("the first client is admitted");
    let tcp = TcpStream::connect(("127.0.0.1", tls_port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let conn =
        rustls::ClientConnection::new(cfg, ServerName::try_from("localhost").unwrap()).unwrap();
    let mut second = rustls::StreamOwned::new(conn, tcp);
    let mut got = Vec::new();
    let _ = second.read_to_end(&mut got);
    assert_eq!(s(&got), "-ERR max number of clients reached\r\n");
    assert_eq!(first.q("PING"), "+PONG\r\n");
}
