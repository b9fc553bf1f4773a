//! Command-line options, spelled as memtier_benchmark spells them where memtier has the option,
//! so a memtier command line runs unchanged (`-s`, `-p`, `-t`, `-c`, `--pipeline`, `--ratio`,
//! `-d`, `--key-pattern`, `--test-time`, `-n`, ...). Defaults are memtier's.
//!
//! percore-loadtest's own options: `--rate` (open-loop arrivals), `--json`, `--tag`,
//! `--no-multishot`, `--progress`/`--no-progress`, `--slow`.

use std::path::PathBuf;
use std::time::Duration;

/// How keys are chosen for one command type (memtier's `--key-pattern=SET:GET` letters).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KeyPattern {
    /// R: uniform over [min, max].
    Random,
    /// S: each connection walks [min, max] in order, wrapping.
    Sequential,
    /// P: [min, max] is cut into one contiguous part per connection; each walks its own part.
    Parallel,
    /// G: normal around the median with the given standard deviation, clamped to [min, max].
    Gaussian,
}

impl KeyPattern {
    fn parse(s: &str) -> Result<Self, String> {
        match s {
            "R" => Ok(Self::Random),
            "S" => Ok(Self::Sequential),
            "P" => Ok(Self::Parallel),
            "G" => Ok(Self::Gaussian),
            _ => Err(format!(
                "unknown key pattern '{s}': use R, S, P or G (as SET:GET, e.g. R:R)"
            )),
        }
    }

    pub fn letter(self) -> char {
        match self {
            Self::Random => 'R',
            Self::Sequential => 'S',
            Self::Parallel => 'P',
            Self::Gaussian => 'G',
        }
    }
}

/// How long each connection runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Length {
    /// `-n N`: N requests per connection.
    Requests(u64),
    /// `-n allkeys`: each connection covers its share of the key range once.
    AllKeys,
    /// `--test-time S`.
    Time(Duration),
}

#[derive(Clone, Debug)]
pub struct Config {
    pub server: String,
    pub port: u16,
    pub auth: Option<String>,
    pub select_db: Option<u32>,
    pub threads: usize,
    pub clients: usize,
    pub pipeline: usize,
    pub ratio_set: u32,
    pub ratio_get: u32,
    pub data_size: usize,
    pub key_prefix: String,
    pub key_min: u64,
    pub key_max: u64,
    pub set_pattern: KeyPattern,
    pub get_pattern: KeyPattern,
    pub key_stddev: Option<f64>,
    pub key_median: Option<f64>,
    pub length: Length,
    pub distinct_client_seed: bool,
    pub seed: u64,
    pub hide_histogram: bool,
    /// Requests per second over all connections; None is closed-loop.
    pub rate: Option<f64>,
    pub json: Option<PathBuf>,
    /// Requests at least this slow are listed one by one in the JSON (`--slow MS`).
    pub slow: Option<Duration>,
    pub tags: Vec<(String, String)>,
    pub multishot: bool,
    pub progress: Option<bool>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            server: "127.0.0.1".into(),
            port: 6379,
            auth: None,
            select_db: None,
            threads: 4,
            clients: 50,
            pipeline: 1,
            ratio_set: 1,
            ratio_get: 10,
            data_size: 32,
            key_prefix: "memtier-".into(),
            key_min: 0,
            key_max: 10_000_000,
            set_pattern: KeyPattern::Random,
            get_pattern: KeyPattern::Random,
            key_stddev: None,
            key_median: None,
            length: Length::Requests(10_000),
            distinct_client_seed: false,
            seed: 1,
            hide_histogram: false,
            rate: None,
            json: None,
            slow: None,
            tags: Vec::new(),
            multishot: true,
            progress: None,
        }
    }
}

pub const USAGE: &str = "\
usage: percore-loadtest [options]          run a load (memtier_benchmark's options)
       percore-loadtest report DIR         summarize a scenario's runs (Markdown + SVG)
       percore-loadtest pubsub [options]   Pub/Sub fan-out (see pubsub --help)

  -s, --server HOST            server address (default 127.0.0.1)
  -p, --port PORT              server port (default 6379)
  -a, --authenticate PASS      AUTH with this password (USER:PASS for an ACL user)
      --select-db N            SELECT this database on connect
  -t, --threads N              threads, one io_uring each (default 4)
  -c, --clients N              connections per thread (default 50)
      --pipeline N             requests in flight per connection (default 1)
      --ratio SET:GET          command mix (default 1:10)
  -d, --data-size N            SET value size in bytes (default 32)
      --key-prefix S           (default memtier-)
      --key-minimum N          (default 0)
      --key-maximum N          (default 10000000)
      --key-pattern SET:GET    R random, S sequential, P parallel parts, G gaussian (default R:R)
      --key-stddev X           for G (default range/6)
      --key-median X           for G (default mid-range)
      --test-time SECS         run for a time ...
  -n, --requests N|allkeys     ... or N requests per connection (default 10000)
      --distinct-client-seed   each connection draws its own random sequence
      --randomize              seed from the clock (default: a fixed seed)
      --rate OPS               open loop: OPS requests/s over all connections, latency from
                               the intended send time (no coordinated omission)
      --json FILE              write the results as JSON
      --slow MS                list each request of at least MS ms in the JSON (`slow`): when
                               it was sent (CLOCK_MONOTONIC, as `perf record -k
                               CLOCK_MONOTONIC` stamps events) and how long it took
      --tag KEY=VALUE          copied into the JSON (scenario metadata); repeatable
      --hide-histogram         no latency distribution in the text output
      --no-multishot           plain one-shot receives instead of multishot + provided buffers
      --progress, --no-progress  a progress line each second (default: on for runs >= 3 s)
";

pub(crate) fn number<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag}: '{v}' is not a valid number"))
}

fn pair(flag: &str, v: &str) -> Result<(String, String), String> {
    v.split_once(':')
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .ok_or_else(|| format!("{flag}: expected A:B, got '{v}'"))
}

/// A `--tag KEY=VALUE`.
pub(crate) fn tag(v: &str) -> Result<(String, String), String> {
    v.split_once('=')
        .map(|(k, val)| (k.to_string(), val.to_string()))
        .ok_or_else(|| format!("--tag: expected KEY=VALUE, got '{v}'"))
}

impl Config {
    /// Parses options (without the program name). Errors say which option and why.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Config, String> {
        let mut c = Config::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with('-') => (f.to_string(), Some(v.to_string())),
                _ => (arg.clone(), None),
            };
            let switch = |c: &mut Config| -> Result<bool, String> {
                match flag.as_str() {
                    "--distinct-client-seed" => c.distinct_client_seed = true,
                    "--randomize" => {
                        c.seed = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map(|d| d.as_nanos() as u64)
                            .unwrap_or(1)
                    }
                    "--hide-histogram" => c.hide_histogram = true,
                    "--no-multishot" => c.multishot = false,
                    "--progress" => c.progress = Some(true),
                    "--no-progress" => c.progress = Some(false),
                    _ => return Ok(false),
                }
                Ok(true)
            };
            if inline.is_none() && switch(&mut c)? {
                continue;
            }
            if flag == "-h" || flag == "--help" {
                return Err(String::new());
            }
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .ok_or_else(|| format!("{flag} needs a value (see --help)"))?,
            };
            let v = value.as_str();
            match flag.as_str() {
                "-s" | "--server" => c.server = v.to_string(),
                "-p" | "--port" => c.port = number(&flag, v)?,
                "-a" | "--authenticate" => c.auth = Some(v.to_string()),
                "--select-db" => c.select_db = Some(number(&flag, v)?),
                "-t" | "--threads" => c.threads = number(&flag, v)?,
                "-c" | "--clients" => c.clients = number(&flag, v)?,
                "--pipeline" => c.pipeline = number(&flag, v)?,
                "--ratio" => {
                    let (a, b) = pair(&flag, v)?;
                    c.ratio_set = number(&flag, &a)?;
                    c.ratio_get = number(&flag, &b)?;
                }
                "-d" | "--data-size" => c.data_size = number(&flag, v)?,
                "--key-prefix" => c.key_prefix = v.to_string(),
                "--key-minimum" => c.key_min = number(&flag, v)?,
                "--key-maximum" => c.key_max = number(&flag, v)?,
                "--key-pattern" => {
                    let (a, b) = pair(&flag, v)?;
                    c.set_pattern = KeyPattern::parse(&a)?;
                    c.get_pattern = KeyPattern::parse(&b)?;
                }
                "--key-stddev" => c.key_stddev = Some(number(&flag, v)?),
                "--key-median" => c.key_median = Some(number(&flag, v)?),
                "--test-time" => c.length = Length::Time(Duration::from_secs(number(&flag, v)?)),
                "-n" | "--requests" => {
                    c.length = if v == "allkeys" {
                        Length::AllKeys
                    } else {
                        Length::Requests(number(&flag, v)?)
                    }
                }
                "--rate" => c.rate = Some(number(&flag, v)?),
                "--json" | "--json-out-file" => c.json = Some(PathBuf::from(v)),
                "--slow" => {
                    let ms: f64 = number(&flag, v)?;
                    if !(ms.is_finite() && ms >= 0.0) {
                        return Err("--slow must be a number of milliseconds, 0 or more".into());
                    }
                    c.slow = Some(Duration::from_secs_f64(ms / 1e3));
                }
                "--tag" => c.tags.push(tag(v)?),
                _ => return Err(format!("unknown option '{flag}' (see --help)")),
            }
        }
        c.check()?;
        Ok(c)
    }

    fn check(&self) -> Result<(), String> {
        if self.threads == 0 || self.clients == 0 || self.pipeline == 0 {
            return Err("--threads, --clients and --pipeline must be at least 1".into());
        }
        if self.threads > 1024 || self.clients > 65_536 || self.pipeline > 65_536 {
            return Err(
                "--threads (max 1024), --clients or --pipeline (max 65536) too large".into(),
            );
        }
        if self.ratio_set == 0 && self.ratio_get == 0 {
            return Err("--ratio: at least one of SET and GET must be non-zero".into());
        }
        if self.key_max < self.key_min {
            return Err("--key-maximum is below --key-minimum".into());
        }
        if self.data_size > 512 << 20 {
            return Err("--data-size: at most 512 MB (Redis's proto-max-bulk-len)".into());
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                return Err("--rate must be a positive number of requests per second".into());
            }
        }
        if let Some(sd) = self.key_stddev {
            if !(sd.is_finite() && sd > 0.0) {
                return Err("--key-stddev must be positive".into());
            }
        }
        if self.length == Length::Requests(0) {
            return Err("--requests must be at least 1".into());
        }
        if matches!(self.length, Length::Time(d) if d.is_zero()) {
            return Err("--test-time must be at least 1 second".into());
        }
        Ok(())
    }

    pub fn connections(&self) -> usize {
        self.threads * self.clients
    }

    pub fn key_range(&self) -> u64 {
        self.key_max - self.key_min + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config, String> {
        Config::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn memtier_command_lines_parse() {
        let c = parse(
            "-s 127.0.0.1 -p 7000 -t 2 -c 10 --pipeline=32 --ratio=1:0 -d 100 \
                       --key-pattern=P:P --key-maximum=999 -n allkeys --hide-histogram",
        )
        .unwrap();
        assert_eq!(
            (c.port, c.threads, c.clients, c.pipeline),
            (7000, 2, 10, 32)
        );
        assert_eq!((c.ratio_set, c.ratio_get, c.data_size), (1, 0, 100));
        assert_eq!(
            (c.set_pattern, c.get_pattern),
            (KeyPattern::Parallel, KeyPattern::Parallel)
        );
        assert_eq!(c.length, Length::AllKeys);
        assert_eq!(c.key_range(), 1000);
        assert!(c.hide_histogram);
        let c = parse("--test-time 5 --rate 1000 --tag server=redis --json out.json").unwrap();
        assert_eq!(c.length, Length::Time(Duration::from_secs(5)));
        assert_eq!(c.rate, Some(1000.0));
        assert_eq!(c.tags, vec![("server".to_string(), "redis".to_string())]);
        assert_eq!(c.slow, None);
        let c = parse("--slow 0.5").unwrap();
        assert_eq!(c.slow, Some(Duration::from_micros(500)));
    }

    #[test]
    fn bad_options_say_what_is_wrong() {
        assert!(parse("--bogus 1").unwrap_err().contains("--bogus"));
        assert!(parse("-c").unwrap_err().contains("needs a value"));
        assert!(parse("-c x").unwrap_err().contains("not a valid number"));
        assert!(parse("--ratio 0:0").unwrap_err().contains("--ratio"));
        assert!(parse("--key-pattern=X:R")
            .unwrap_err()
            .contains("unknown key pattern"));
        assert!(parse("--key-minimum 10 --key-maximum 5").is_err());
        assert!(parse("--rate -5").is_err());
        assert!(parse("--slow -1").is_err());
        assert!(parse("--slow soon").is_err());
        assert!(parse("--pipeline 0").is_err());
    }
}
