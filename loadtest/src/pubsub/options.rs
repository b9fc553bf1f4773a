//! `percore-loadtest pubsub` options. Connection options are spelled as for a request load
//! (`-s`, `-p`, `-a`, `-t`, `--pipeline`, `-d`, `--test-time`, `--rate`, `--json`, `--tag`);
//! the rest say how many publishers, subscribers and channels there are.

use std::path::PathBuf;
use std::time::Duration;

use super::order::Layout;
use crate::config::{number, tag};

/// How long the publishers run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Length {
    /// `--test-time S`.
    Time(Duration),
    /// `-n N`: N messages per publisher.
    Messages(u64),
}

#[derive(Clone, Debug)]
pub struct PubSubConfig {
    pub server: String,
    pub port: u16,
    pub auth: Option<String>,
    pub publishers: usize,
    pub layout: Layout,
    /// Threads the subscriber connections are spread over (each runs one io_uring).
    pub threads: usize,
    /// PUBLISH commands one publisher sends before reading their replies.
    pub pipeline: usize,
    /// Messages published but not yet delivered to all their subscribers, at most (counted
    /// as deliveries: this many times the mean fan-out), so a server's subscriber output
    /// buffers stay far below `client-output-buffer-limit pubsub`.
    pub in_flight: u64,
    /// Messages per second over all publishers; None publishes as fast as `in_flight` allows.
    pub rate: Option<f64>,
    pub data_size: usize,
    pub channel_prefix: String,
    pub length: Length,
    pub json: Option<PathBuf>,
    pub tags: Vec<(String, String)>,
    /// The server's process, for its CPU time over the measured window (`/proc/PID/stat`).
    pub server_pid: Option<u32>,
}

impl Default for PubSubConfig {
    fn default() -> Self {
        Self {
            server: "127.0.0.1".into(),
            port: 6379,
            auth: None,
            publishers: 1,
            layout: Layout {
                subscribers: 1000,
                channels: 1,
                per_subscriber: 1,
            },
            threads: 1,
            pipeline: 32,
            in_flight: 1000,
            rate: None,
            data_size: 64,
            channel_prefix: "channel:".into(),
            length: Length::Time(Duration::from_secs(10)),
            json: None,
            tags: Vec::new(),
            server_pid: None,
        }
    }
}

pub const USAGE: &str = "\
usage: percore-loadtest pubsub [options]   publish to channels with many subscribers; check
                                           every subscriber got every message, in order

  -s, --server HOST            server address (default 127.0.0.1)
  -p, --port PORT              server port (default 6379)
  -a, --authenticate PASS      AUTH with this password (USER:PASS for an ACL user)
      --publishers N           publisher connections, one thread each (default 1)
      --subscribers N          subscriber connections (default 1000)
      --channels N             channels (default 1)
      --channels-per-subscriber K  subscriber s holds channels (s*K + j) mod N, j < K
                               (default 1): 1000 subscribers on 1 channel is 1 channel x 1000
                               subscribers; 10 subscribers with K = 1000 on 1000 channels is
                               1000 channels x 10 subscribers
  -t, --threads N              threads the subscribers are spread over (default 1)
      --pipeline N             PUBLISHes a publisher sends before reading replies (default 32)
      --in-flight N            messages published and not yet delivered everywhere, at most
                               (default 1000)
      --rate MSGS              messages per second over all publishers, latency from the
                               intended send time (default: as fast as --in-flight allows)
  -d, --data-size N            message size in bytes (default 64; at least its header)
      --channel-prefix S       channel names are S0, S1, ... (default channel:)
      --test-time SECS         publish for a time (default 10) ...
  -n, --messages N             ... or N messages per publisher
      --server-pid PID         report the server's CPU seconds over the run (/proc/PID/stat)
      --json FILE              write the results as JSON
      --tag KEY=VALUE          copied into the JSON; repeatable
";

impl PubSubConfig {
    /// Parses options (after the word `pubsub`). Err("") asks for the usage text.
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<PubSubConfig, String> {
        let mut c = PubSubConfig::default();
        let mut it = args.into_iter();
        while let Some(arg) = it.next() {
            if arg == "-h" || arg == "--help" {
                return Err(String::new());
            }
            let (flag, value) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with('-') => (f.to_string(), v.to_string()),
                _ => {
                    let v = it
                        .next()
                        .ok_or_else(|| format!("{arg} needs a value (see --help)"))?;
                    (arg, v)
                }
            };
            let v = value.as_str();
            match flag.as_str() {
                "-s" | "--server" => c.server = v.to_string(),
                "-p" | "--port" => c.port = number(&flag, v)?,
                "-a" | "--authenticate" => c.auth = Some(v.to_string()),
                "--publishers" => c.publishers = number(&flag, v)?,
                "--subscribers" => c.layout.subscribers = number(&flag, v)?,
                "--channels" => c.layout.channels = number(&flag, v)?,
                "--channels-per-subscriber" => c.layout.per_subscriber = number(&flag, v)?,
                "-t" | "--threads" => c.threads = number(&flag, v)?,
                "--pipeline" => c.pipeline = number(&flag, v)?,
                "--in-flight" => c.in_flight = number(&flag, v)?,
                "--rate" => c.rate = Some(number(&flag, v)?),
                "-d" | "--data-size" => c.data_size = number(&flag, v)?,
                "--channel-prefix" => c.channel_prefix = v.to_string(),
                "--test-time" => c.length = Length::Time(Duration::from_secs(number(&flag, v)?)),
                "-n" | "--messages" => c.length = Length::Messages(number(&flag, v)?),
                "--server-pid" => c.server_pid = Some(number(&flag, v)?),
                "--json" => c.json = Some(PathBuf::from(v)),
                "--tag" => c.tags.push(tag(v)?),
                _ => return Err(format!("unknown option '{flag}' (see --help)")),
            }
        }
        c.check()?;
        Ok(c)
    }

    fn check(&self) -> Result<(), String> {
        let l = &self.layout;
        if self.publishers == 0 || l.subscribers == 0 || l.channels == 0 || l.per_subscriber == 0 {
            return Err(
                "--publishers, --subscribers, --channels and --channels-per-subscriber must be at least 1"
                    .into(),
            );
        }
        if l.per_subscriber > l.channels {
            return Err("--channels-per-subscriber is more than --channels".into());
        }
        if self.publishers > 256 || l.subscribers > 100_000 || l.channels > 1_000_000 {
            return Err("at most 256 publishers, 100000 subscribers and 1000000 channels".into());
        }
        if l.subscribers.saturating_mul(l.per_subscriber) > 10_000_000 {
            return Err("more than 10000000 subscriptions in all".into());
        }
        if self.threads == 0 || self.threads > l.subscribers || self.threads > 64 {
            return Err(
                "--threads must be at least 1, at most 64 and at most --subscribers".into(),
            );
        }
        if self.pipeline == 0 || self.pipeline > 65_536 {
            return Err("--pipeline must be from 1 to 65536".into());
        }
        if self.in_flight == 0 {
            return Err("--in-flight must be at least 1".into());
        }
        if let Some(r) = self.rate {
            if !(r.is_finite() && r > 0.0) {
                return Err("--rate must be a positive number of messages per second".into());
            }
        }
        if self.data_size > 1 << 20 {
            return Err("--data-size: at most 1 MB".into());
        }
        match self.length {
            Length::Messages(0) => Err("--messages must be at least 1".into()),
            Length::Time(d) if d.is_zero() => Err("--test-time must be at least 1 second".into()),
            _ => Ok(()),
        }
    }

    pub fn channel_name(&self, c: usize) -> String {
        format!("{}{c}", self.channel_prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<PubSubConfig, String> {
        PubSubConfig::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn scenario_command_lines_parse() {
        let c = parse(
            "-p 7000 --subscribers 10 --channels=1000 --channels-per-subscriber 1000 \
             -t 2 --publishers 2 --pipeline 8 --in-flight 50 -d 128 -n 500 \
             --server-pid 42 --tag server=redis --json out.json",
        )
        .unwrap();
        assert_eq!(c.port, 7000);
        assert_eq!(
            c.layout,
            Layout {
                subscribers: 10,
                channels: 1000,
                per_subscriber: 1000
            }
        );
        assert_eq!((c.threads, c.publishers, c.pipeline), (2, 2, 8));
        assert_eq!((c.in_flight, c.data_size), (50, 128));
        assert_eq!(c.length, Length::Messages(500));
        assert_eq!(c.server_pid, Some(42));
        assert_eq!(c.tags, vec![("server".to_string(), "redis".to_string())]);
        assert_eq!(c.json, Some(PathBuf::from("out.json")));
        assert_eq!(c.rate, None);
        let d = parse("--test-time 3 --rate 5000 --channel-prefix news.").unwrap();
        assert_eq!(d.length, Length::Time(Duration::from_secs(3)));
        assert_eq!(d.rate, Some(5000.0));
        assert_eq!(d.channel_name(7), "news.7");
        assert_eq!(d.layout.subscribers, 1000, "the default: 1 channel x 1000");
        assert_eq!(parse("--help").unwrap_err(), "");
    }

    #[test]
    fn bad_options_say_what_is_wrong() {
        for (args, says) in [
            ("--bogus 1", "--bogus"),
            ("--subscribers", "needs a value"),
            ("--channels x", "not a valid number"),
            ("--channels 0", "at least 1"),
            ("--publishers 0", "at least 1"),
            (
                "--channels 5 --channels-per-subscriber 6",
                "more than --channels",
            ),
            ("--subscribers 2 -t 3", "--threads"),
            ("--rate 0", "--rate"),
            ("--rate nan", "--rate"),
            ("--in-flight 0", "--in-flight"),
            ("-n 0", "--messages"),
            ("--test-time 0", "--test-time"),
            ("--pipeline 0", "--pipeline"),
            ("--tag novalue", "KEY=VALUE"),
        ] {
            let e = parse(args).unwrap_err();
            assert!(e.contains(says), "{args}: {e}");
        }
    }
}
