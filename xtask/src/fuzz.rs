//! `cargo xtask fuzz`: coverage-less randomized fuzzing on the stable toolchain.
//!
//! cargo-fuzz / libFuzzer need a nightly compiler with sanitizer support; this runner
//! needs nothing but stable Rust. Each target takes raw bytes; a seeded generator makes
//! them (random bytes, structured inputs, and mutations of a seed corpus: bit flips,
//! interesting values, dictionary tokens, splices, deletions), runs the target under
//! `catch_unwind`, and checks its contract. A panic or a broken contract is a finding:
//! the input is saved under `target/xtask-fuzz/<target>/` and can be replayed with
//! `--replay FILE`.
//!
//! Targets:
//! - `loss`: bytes → a configuration of TripletLoss or of one of the losses of
//!   `metric-loss-losses` (every distance, strategy, margin kind, reduction), shapes
//!   (0 rows, 0 columns, mismatched lengths), labels (i64 extremes), values (NaN, ±∞,
//!   subnormals, ±1e30, raw bit patterns) and weights, in f32 and f64. Contract: Ok with
//!   finite outputs of the right shapes (the reference soft margin's documented +∞
//!   aside), or a typed error.
//! - `config-json`, `config-toml`, `config-yaml`: bytes → text → `metric_loss_registry::
//!   from_str`. Contract: Ok or a typed error; an accepted config round-trips through
//!   `to_config_string` to an equal config, and the loss it builds evaluates a small batch.
//! - `npy`: bytes → a file → the CLI's `.npy` readers (embeddings, labels, weights).
//!   Contract: Ok or a `CliError`, never a panic, never more memory than the file holds.
//! - `mining`: bytes → a row and labels → `mine_row` / `route_gradient`.
//! - `distance`: bytes → `DistanceKind::matrix`, `pair_vjp`, `l2_normalize`.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use metric_loss_core::{
    Batch, Distance, Embeddings, Float, LossError, LossInput, LossOutput, MetricLoss,
    MetricLossExt, NegativeStrategy, PositiveStrategy, SampleWeight,
};
use metric_loss_distances::{l2_normalize, l2_normalize_vjp, DistanceKind};
use metric_loss_registry::Format;
use metric_loss_triplet::{Margin, TripletLossConfig};

const HELP: &str = "\
cargo xtask fuzz [--seconds N] [--target NAME]... [--seed S] [--replay FILE]

Coverage-less randomized fuzzing on the stable toolchain (cargo-fuzz needs nightly).
  --seconds N     time per target (default 60)
  --target NAME   one of: loss, config-json, config-toml, config-yaml, npy, mining,
                  distance (repeatable; default: all)
  --seed S        the generator's seed (default: from the clock, printed)
  --replay FILE   run one saved input against --target and print the outcome
Findings are saved under target/xtask-fuzz/<target>/ and summarised at the end; the
command fails when there is any.
";

const TARGETS: [&str; 7] = [
    "loss",
    "config-json",
    "config-toml",
    "config-yaml",
    "npy",
    "mining",
    "distance",
];

/// Runs `cargo xtask fuzz`.
pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let mut seconds = 60.0f64;
    let mut targets: Vec<String> = Vec::new();
    let mut seed: Option<u64> = None;
    let mut replay: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value\n\n{HELP}"))
        };
        match a.as_str() {
            "--seconds" => {
                seconds = value("--seconds")?
                    .parse()
                    .map_err(|e| format!("--seconds: {e}"))?;
            }
            "--target" => targets.push(value("--target")?),
            "--seed" => {
                seed = Some(
                    value("--seed")?
                        .parse()
                        .map_err(|e| format!("--seed: {e}"))?,
                )
            }
            "--replay" => replay = Some(PathBuf::from(value("--replay")?)),
            "-h" | "--help" => {
                print!("{HELP}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}\n\n{HELP}")),
        }
    }
    for t in &targets {
        if !TARGETS.contains(&t.as_str()) {
            return Err(format!("unknown target {t:?}; expected one of {TARGETS:?}"));
        }
    }
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(format!(
            "--seconds must be a non-negative number, got {seconds}"
        ));
    }
    install_quiet_panic_hook();
    if let Some(path) = replay {
        let [target] = targets.as_slice() else {
            return Err("--replay needs exactly one --target".into());
        };
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        return match run_one(target, &bytes) {
            Ok(()) => {
                println!("{target}: {}: no finding", path.display());
                Ok(())
            }
            Err(f) => Err(format!("{target}: {}: {f}", path.display())),
        };
    }
    if targets.is_empty() {
        targets = TARGETS.iter().map(|t| t.to_string()).collect();
    }
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    println!("fuzz: seed {seed}, {seconds} s per target");
    let out_dir = findings_dir();
    let mut total_findings = 0;
    let mut summary = Vec::new();
    for (t, target) in targets.iter().enumerate() {
        let mut rng = Rng::new(seed ^ (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let corpus = seed_corpus(target);
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let mut findings = BTreeMap::<String, (String, Vec<u8>, u64)>::new();
        let (mut execs, mut slowest) = (0u64, (Duration::ZERO, Vec::new()));
        while Instant::now() < deadline {
            let input = generate(target, &corpus, &mut rng);
            execs += 1;
            let start = Instant::now();
            let outcome = run_one(target, &input);
            let took = start.elapsed();
            if took > slowest.0 {
                slowest = (took, input.clone());
            }
            if let Err(f) = outcome {
                // One entry per kind of finding (digits and the bracketed config dropped),
                // keeping the first input and message, with a count.
                findings.entry(finding_key(&f)).or_insert((f, input, 0)).2 += 1;
            }
        }
        println!(
            "fuzz {target}: {execs} executions, {} distinct findings, slowest input {:.1} ms ({} bytes)",
            findings.len(),
            slowest.0.as_secs_f64() * 1e3,
            slowest.1.len()
        );
        let dir = out_dir.join(target);
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("slowest.bin"), &slowest.1);
        if slowest.0 > Duration::from_secs(2) {
            findings.insert(
                "slow".into(),
                (
                    format!(
                        "an input took {:.1} s (saved as slowest.bin)",
                        slowest.0.as_secs_f64()
                    ),
                    slowest.1,
                    1,
                ),
            );
        }
        for (i, (message, input, count)) in findings.values().enumerate() {
            let file = dir.join(format!("finding-{i}.bin"));
            let _ = std::fs::write(&file, input);
            let message: String = message.chars().take(400).collect();
            println!("  finding ({count} inputs): {message}");
            println!(
                "    input saved to {} ({} bytes)",
                file.display(),
                input.len()
            );
        }
        total_findings += findings.len();
        summary.push(format!(
            "{target}: {execs} execs, {} findings",
            findings.len()
        ));
    }
    println!("fuzz: {}", summary.join("; "));
    if total_findings > 0 {
        Err(format!("{total_findings} distinct findings (see above)"))
    } else {
        Ok(())
    }
}

/// Groups findings: the first line without its bracketed part and with digits removed.
fn finding_key(f: &str) -> String {
    let line = f.lines().next().unwrap_or("");
    let (head, ctx) = line.split_once(" [").unwrap_or((line, ""));
    // The loss's type name, for panics (contract findings start with it).
    let kind = ctx.split(['{', ' ', '(', ';']).next().unwrap_or("");
    let key = if head.starts_with("panic") {
        format!("{head} {kind}")
    } else {
        head.to_string()
    };
    key.chars()
        .filter(|c| !c.is_ascii_digit())
        .take(240)
        .collect()
}

fn findings_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("xtask-fuzz")
}

thread_local! {
    static LAST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
    /// What the target was doing, appended to a panic's message.
    static CONTEXT: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

fn set_context(c: String) {
    CONTEXT.with(|x| *x.borrow_mut() = c);
}

/// Panics are expected findings: record the message and location instead of printing.
fn install_quiet_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info.to_string().replace('\n', " ");
        LAST_PANIC.with(|p| *p.borrow_mut() = Some(msg));
    }));
}

/// Runs `target` on `input`; `Err` describes a finding (a panic or a broken contract).
fn run_one(target: &str, input: &[u8]) -> Result<(), String> {
    set_context(String::new());
    let result = catch_unwind(AssertUnwindSafe(|| match target {
        "loss" => target_loss(input),
        "config-json" => target_config(input, Format::Json),
        "config-toml" => target_config(input, Format::Toml),
        "config-yaml" => target_config(input, Format::Yaml),
        "npy" => target_npy(input),
        "mining" => target_mining(input),
        "distance" => target_distance(input),
        _ => Ok(()),
    }));
    match result {
        Ok(r) => r,
        Err(_) => Err(format!(
            "panic: {} [{}]",
            LAST_PANIC
                .with(|p| p.borrow_mut().take())
                .unwrap_or_else(|| "(no message)".into()),
            CONTEXT.with(|x| x.borrow().clone())
        )),
    }
}

// ---------------------------------------------------------------------------------------
// Random numbers and input generation
// ---------------------------------------------------------------------------------------

/// Core's SplitMix64, with the draws the fuzzer needs.
struct Rng(metric_loss_core::SplitMix64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(metric_loss_core::SplitMix64::new(seed))
    }
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: usize) -> usize {
        self.0.below(n)
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// Tokens worth inserting into config text.
const CONFIG_TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    "\"",
    ":",
    ",",
    "=",
    "\n",
    "  ",
    "null",
    "~",
    "true",
    "false",
    "0",
    "-0",
    "1e309",
    "-1e309",
    "NaN",
    "nan",
    ".nan",
    "inf",
    ".inf",
    "-.inf",
    "1e-320",
    "18446744073709551616",
    "-9223372036854775809",
    "0x10",
    "\"class_name\"",
    "class_name",
    "\"config\"",
    "config",
    "TripletLoss",
    "Similarity>TripletLoss",
    "PNLoss",
    "XBM",
    "CircleLoss",
    "\"margin\"",
    "margin",
    "\"distance\"",
    "distance",
    "soft_margin",
    "stable_soft_margin",
    "positive_mining_strategy",
    "negative_mining_strategy",
    "\"semi-hard\"",
    "\"hard\"",
    "reduction",
    "\"none\"",
    "memory_size",
    "\"l2\"",
    "\"CosineDistance\"",
    "&a ",
    "*a",
    "<<: *a",
    "!!binary ",
    "!!float ",
    "? ",
    "- ",
    "[config]",
    "[[config]]",
    "1979-05-27T07:32:00Z",
    "'''",
    "\"\"\"",
    "\\u0000",
    "\u{feff}",
    "\u{0}",
    "é",
    "# comment\n",
    "{\"class_name\": {\"class_name\": ",
];

fn seed_corpus(target: &str) -> Vec<Vec<u8>> {
    let json = [
        r#"{"class_name": "TripletLoss", "config": {}}"#,
        r#"{"class_name": "Similarity>TripletLoss", "config": {"distance": {"class_name": "Similarity>EuclideanDistance", "config": {"name": "euclidean"}}, "margin": null, "reduction": "sum", "positive_mining_strategy": "easy", "negative_mining_strategy": "hard"}}"#,
        r#"{"class_name": "TripletLoss", "config": {"distance": "l2", "soft_margin": true, "margin": 1.0, "stable_soft_margin": true, "exclude_degenerate_anchors": true, "name": "t"}, "module": "x", "registered_name": "y"}"#,
        r#"{"class_name": "TripletLoss", "config": {"margin": 0.2, "distance": "snr", "negative_mining_strategy": "semi-hard"}}"#,
    ];
    let toml = [
        "class_name = \"TripletLoss\"\n[config]\nmargin = 0.2\ndistance = \"l2\"\n",
        "class_name = \"Similarity>TripletLoss\"\n[config]\nsoft_margin = true\nstable_soft_margin = true\nreduction = \"none\"\n[config.distance]\nclass_name = \"ManhattanDistance\"\n",
    ];
    let yaml = [
        "class_name: TripletLoss\nconfig:\n  margin: 0.5\n  distance: cosine\n",
        "class_name: Similarity>TripletLoss\nconfig:\n  distance:\n    class_name: Similarity>EuclideanDistance\n    config:\n      name: euclidean\n  margin: null\n  stable_soft_margin: true\n",
        "base: &a {margin: 0.1}\nclass_name: TripletLoss\nconfig: *a\n",
    ];
    let mut corpus: Vec<Vec<u8>> = match target {
        "config-json" => json.iter().map(|s| s.as_bytes().to_vec()).collect(),
        "config-toml" => toml.iter().map(|s| s.as_bytes().to_vec()).collect(),
        "config-yaml" => yaml.iter().map(|s| s.as_bytes().to_vec()).collect(),
        "npy" => npy_seeds(),
        _ => Vec::new(),
    };
    // The example configs of the repository, in their format.
    let ext = match target {
        "config-json" => "json",
        "config-toml" => "toml",
        "config-yaml" => "yaml",
        _ => "",
    };
    if !ext.is_empty() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/configs");
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.path().extension().and_then(|x| x.to_str()) == Some(ext) {
                    if let Ok(b) = std::fs::read(e.path()) {
                        corpus.push(b);
                    }
                }
            }
        }
    }
    corpus
}

/// Valid .npy files: f32 / f64 matrices, integer labels, scalar weights.
fn npy_seeds() -> Vec<Vec<u8>> {
    let npy = |descr: &str, shape: &str, fortran: bool, data: Vec<u8>| {
        let dict = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        let mut header = dict.into_bytes();
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(b' ');
        }
        header.push(b'\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((header.len() as u16).to_le_bytes());
        out.extend(header);
        out.extend(data);
        out
    };
    let f32s: Vec<u8> = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let f64s: Vec<u8> = [1.0f64, 0.0, 0.8, 0.6]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let i64s: Vec<u8> = [0i64, 0, 1, 2]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    vec![
        npy("<f4", "(4, 2)", false, f32s.clone()),
        npy("<f4", "(2, 4)", true, f32s),
        npy(">f8", "(2, 2)", false, f64s.clone()),
        npy("<i8", "(4,)", false, i64s.clone()),
        npy("<i8", "(4, 1)", false, i64s),
        npy("<u1", "(3,)", false, vec![0, 1, 255]),
        npy("<f8", "()", false, f64s[..8].to_vec()),
    ]
}

fn generate(target: &str, corpus: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let roll = rng.below(100);
    if corpus.is_empty() || roll < 15 {
        let len = [0, 1, 8, 32, 128, 512, 2048][rng.below(7)];
        let len = rng.below(len + 1);
        let mut bytes = rng.bytes(len);
        if target.starts_with("config") && roll < 5 {
            // Text of tokens only.
            bytes = (0..rng.below(40))
                .flat_map(|_| CONFIG_TOKENS[rng.below(CONFIG_TOKENS.len())].bytes())
                .collect();
        }
        return bytes;
    }
    if target.starts_with("config") && roll < 20 {
        return nesting_bomb(target, rng);
    }
    let mut input = corpus[rng.below(corpus.len())].clone();
    for _ in 0..1 + rng.below(6) {
        mutate(&mut input, corpus, target, rng);
    }
    input
}

/// Deep nesting and alias expansion: the parsers must refuse or bound them, never
/// overflow the stack or allocate without bound.
fn nesting_bomb(target: &str, rng: &mut Rng) -> Vec<u8> {
    let depth = [10, 100, 1_000, 10_000, 100_000][rng.below(5)];
    match target {
        "config-json" => format!(
            "{{\"class_name\": \"TripletLoss\", \"config\": {{\"name\": {}1{}}}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        )
        .into_bytes(),
        "config-toml" => format!(
            "class_name = \"TripletLoss\"\n[config]\nname = {}1{}\n",
            "[".repeat(depth),
            "]".repeat(depth)
        )
        .into_bytes(),
        _ => {
            if rng.below(2) == 0 {
                format!(
                    "class_name: TripletLoss\nconfig:\n  name: {}1{}\n",
                    "[".repeat(depth),
                    "]".repeat(depth)
                )
                .into_bytes()
            } else {
                // Billion laughs.
                let mut s = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
                for i in 1..9 {
                    let refs = vec![format!("*a{}", i - 1); 10].join(", ");
                    s.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
                }
                s.push_str("class_name: TripletLoss\nconfig:\n  name: *a8\n");
                s.into_bytes()
            }
        }
    }
}

fn mutate(input: &mut Vec<u8>, corpus: &[Vec<u8>], target: &str, rng: &mut Rng) {
    let len = input.len();
    match rng.below(8) {
        0 if len > 0 => {
            let i = rng.below(len);
            input[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            input[i] = [0, 1, 0x7f, 0x80, 0xff, b'"', b'\n', b'9'][rng.below(8)];
        }
        2 => {
            let i = rng.below(len + 1);
            let token: Vec<u8> = if target.starts_with("config") {
                CONFIG_TOKENS[rng.below(CONFIG_TOKENS.len())]
                    .as_bytes()
                    .to_vec()
            } else {
                // Interesting little-endian numbers.
                let v: [u8; 8] = [
                    f64::NAN.to_le_bytes(),
                    f64::INFINITY.to_le_bytes(),
                    1e30f64.to_le_bytes(),
                    u64::MAX.to_le_bytes(),
                    (i64::MIN).to_le_bytes(),
                    [0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0],
                    f32::NAN
                        .to_le_bytes()
                        .repeat(2)
                        .try_into()
                        .unwrap_or([0; 8]),
                    [0; 8],
                ][rng.below(8)];
                v[..1 + rng.below(8)].to_vec()
            };
            input.splice(i..i, token);
        }
        3 if len > 0 => {
            let a = rng.below(len);
            let b = (a + 1 + rng.below(16)).min(len);
            input.drain(a..b);
        }
        4 if len > 0 => {
            let a = rng.below(len);
            let b = (a + 1 + rng.below(32)).min(len);
            let chunk = input[a..b].to_vec();
            let at = rng.below(input.len() + 1);
            input.splice(at..at, chunk);
        }
        5 if !corpus.is_empty() => {
            let other = &corpus[rng.below(corpus.len())];
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
        6 if len > 0 => {
            input.truncate(rng.below(len));
        }
        _ => {
            let i = rng.below(len + 1);
            let count = 1 + rng.below(8);
            let extra = rng.bytes(count);
            input.splice(i..i, extra);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Reading structure from bytes
// ---------------------------------------------------------------------------------------

/// Reads values from the input bytes; zeros once they run out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn below(&mut self, n: u8) -> usize {
        usize::from(self.u8() % n)
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |acc, _| (acc << 8) | u64::from(self.u8()))
    }
    fn value(&mut self) -> f64 {
        let b = self.u8();
        if b < 160 {
            return (f64::from(b) - 80.0) / 23.0;
        }
        match b % 16 {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => f64::NEG_INFINITY,
            3 => 0.0,
            4 => -0.0,
            5 => 1e-40,
            6 => -4e-320,
            7 => 1e30,
            8 => -1e30,
            9 => 1e19,
            10 => 3e38,
            11 => f64::MAX,
            12 => f64::from_bits(self.u64()),
            13 => f64::from(f32::from_bits(self.u64() as u32)),
            14 => (f64::from(self.u8()) - 128.0) * 1e3,
            _ => 1e-300,
        }
    }
    fn label(&mut self) -> i64 {
        let b = self.u8();
        match b {
            0..=199 => i64::from(b % 4),
            200..=219 => i64::MIN,
            220..=239 => i64::MAX,
            _ => self.u64() as i64,
        }
    }
    fn margin(&mut self) -> f64 {
        match self.u8() % 8 {
            0 => 0.0,
            1 => -1.0,
            2 => 1e30,
            3 => f64::MAX,
            4 => f64::NAN,
            5 => f64::from_bits(self.u64()),
            _ => f64::from(self.u8()) / 100.0,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Targets
// ---------------------------------------------------------------------------------------

/// A loss built from bytes: TripletLoss or one of metric-loss-losses.
fn loss_from_bytes(b: &mut Bytes<'_>) -> Result<(Box<dyn MetricLoss>, bool), LossError> {
    let distance = DistanceKind::ALL[b.below(6)].name().to_string();
    let pos = ["easy", "hard"][b.below(2)].to_string();
    let neg = ["easy", "hard", "semi-hard"][b.below(3)].to_string();
    let reduction = ["auto", "sum_over_batch_size", "sum", "none"][b.below(4)].to_string();
    let flags = b.u8();
    let margin = b.margin();
    let param = b.margin();
    let triplet = || TripletLossConfig {
        distance: distance.clone().into(),
        positive_mining_strategy: pos.clone(),
        negative_mining_strategy: neg.clone(),
        reduction: reduction.clone().into(),
        soft_margin: flags & 1 != 0,
        margin: if flags & 2 != 0 {
            None
        } else {
            Some(if flags & 1 != 0 { 1.0 } else { margin })
        },
        stable_soft_margin: flags & 4 != 0,
        exclude_degenerate_anchors: flags & 8 != 0,
        ..TripletLossConfig::default()
    };
    use metric_loss_losses as l;
    Ok(match b.below(6) {
        0 => {
            let loss = triplet().build()?;
            let soft = loss.margin() == Margin::Soft;
            (Box::new(loss), soft)
        }
        1 => {
            let mut c = l::PNLoss::builder();
            c.distance = distance.into();
            c.positive_mining_strategy = pos;
            c.negative_mining_strategy = neg;
            c.reduction = reduction.into();
            c.margin = if flags & 2 != 0 { None } else { Some(margin) };
            c.remove_diagonal = flags & 16 == 0;
            (Box::new(c.build()?), flags & 2 != 0)
        }
        2 => {
            let mut c = l::MultiSimilarityLoss::builder();
            c.distance = distance.into();
            c.reduction = reduction.into();
            if flags & 32 != 0 {
                c.alpha = margin;
                c.beta = param;
            }
            (Box::new(c.build()?), false)
        }
        3 => {
            let mut c = l::CircleLoss::builder();
            c.distance = distance.into();
            c.reduction = reduction.into();
            if flags & 32 != 0 {
                c.gamma = param;
                c.margin = margin;
            }
            (Box::new(c.build()?), false)
        }
        4 => {
            let mut c = l::SoftNearestNeighborLoss::builder();
            c.distance = distance.into();
            c.reduction = reduction.into();
            if flags & 32 != 0 {
                c.temperature = param;
            }
            (Box::new(c.build()?), false)
        }
        _ => {
            let memory = [1usize, 2, 4, 8, 64][b.below(5)];
            let c = l::XBMConfig::new(l::WrappedLossConfig::TripletLoss(triplet()), memory);
            let soft = triplet()
                .build()
                .map(|t| t.margin() == Margin::Soft)
                .unwrap_or(false);
            (Box::new(c.build()?), soft)
        }
    })
}

struct Case {
    n: usize,
    dims: usize,
    q: Vec<f64>,
    labels: Vec<i64>,
    keys: Option<(Vec<i64>, Vec<f64>, usize, usize)>,
    weights: u8,
    w: Vec<f64>,
    gradient: bool,
    keep_diagonal: bool,
}

fn case_from_bytes(b: &mut Bytes<'_>) -> Case {
    let shape = b.u8();
    let (n, dims) = (usize::from(shape % 9), usize::from((shape / 9) % 6));
    let skew = b.u8();
    let qlen = if skew < 240 {
        n * dims
    } else {
        (n * dims + usize::from(skew % 3)).saturating_sub(1)
    };
    let q = (0..qlen).map(|_| b.value()).collect();
    let llen = if skew.is_multiple_of(31) { n + 1 } else { n };
    let labels = (0..llen).map(|_| b.label()).collect();
    let flags = b.u8();
    let keys = (flags & 1 != 0).then(|| {
        let s = b.u8();
        let m = usize::from(s % 9);
        let kd = if s & 0x80 != 0 {
            usize::from(s % 5)
        } else {
            dims
        };
        let kl = (0..m).map(|_| b.label()).collect();
        let kv = (0..m * kd).map(|_| b.value()).collect();
        (kl, kv, m, kd)
    });
    let weights = b.u8() % 4;
    let wlen = if flags & 2 != 0 { n + 1 } else { n };
    let w = (0..wlen.max(1)).map(|_| b.value()).collect();
    Case {
        n,
        dims,
        q,
        labels,
        keys,
        weights,
        w,
        gradient: flags & 4 == 0,
        keep_diagonal: flags & 8 != 0,
    }
}

fn cast<T: Float>(v: &[f64]) -> Vec<T> {
    v.iter().map(|x| T::from_f64(*x)).collect()
}

fn evaluate<T: Float>(loss: &dyn MetricLoss, c: &Case) -> Result<LossOutput<T>, LossError> {
    let q: Vec<T> = cast(&c.q);
    let w: Vec<T> = cast(&c.w);
    let kv: Vec<T> = c.keys.as_ref().map(|k| cast(&k.1)).unwrap_or_default();
    let qb = Batch::new(&c.labels, Embeddings::from_row_major(&q, c.n, c.dims)?)?;
    let mut input = LossInput::new(qb);
    if let Some((kl, _, m, kd)) = &c.keys {
        input = input.with_keys(Batch::new(kl, Embeddings::from_row_major(&kv, *m, *kd)?)?);
    }
    if c.keep_diagonal {
        input = input.remove_diagonal(false);
    }
    input = input.with_sample_weight(match c.weights {
        0 => SampleWeight::None,
        1 => SampleWeight::Scalar(w[0]),
        _ => SampleWeight::PerExample(&w),
    });
    if !c.gradient {
        input = input.without_gradient();
    }
    loss.compute(&input)
}

/// The output contract: shapes, finiteness (`soft_inf`: +∞ per-example values are
/// documented for this loss), non-negative per-example values only for the triplet
/// family (others may be negative by definition).
fn check_output<T: Float>(c: &Case, out: &LossOutput<T>, soft_inf: bool) -> Result<(), String> {
    let dt = T::DTYPE;
    if out.per_example.len() != c.n {
        return Err(format!(
            "per_example has {} entries for {} queries",
            out.per_example.len(),
            c.n
        ));
    }
    if c.gradient && out.grad_queries.len() != c.n * c.dims {
        return Err(format!(
            "grad_queries has {} entries, expected {}",
            out.grad_queries.len(),
            c.n * c.dims
        ));
    }
    if let (true, Some((_, _, m, kd))) = (c.gradient, &c.keys) {
        if out.grad_keys.len() != m * kd {
            return Err(format!(
                "grad_keys has {} entries, expected {}",
                out.grad_keys.len(),
                m * kd
            ));
        }
    }
    for (i, v) in out.per_example.iter().enumerate() {
        let documented = soft_inf && v.to_f64() == f64::INFINITY;
        if !(v.is_finite() || documented) {
            return Err(format!(
                "non-finite per_example[{i}] = {v} ({dt}) without an error"
            ));
        }
    }
    let inf_examples = out.per_example.iter().any(|v| !v.is_finite());
    let documented = soft_inf && inf_examples && !out.loss.to_f64().is_nan();
    if !(out.loss.is_finite() || documented) {
        return Err(format!(
            "non-finite loss {} ({dt}) without an error",
            out.loss
        ));
    }
    if let Some(g) = out
        .grad_queries
        .iter()
        .chain(&out.grad_keys)
        .find(|g| !g.is_finite())
    {
        return Err(format!(
            "non-finite gradient entry {g} ({dt}) without an error"
        ));
    }
    Ok(())
}

fn target_loss(input: &[u8]) -> Result<(), String> {
    let mut b = Bytes(input);
    let (loss, soft_inf) = match loss_from_bytes(&mut b) {
        Ok(l) => l,
        Err(e) => {
            let _ = e.to_string();
            return Ok(());
        }
    };
    let c = case_from_bytes(&mut b);
    let name = format!("{loss:?}");
    let name: String = name.chars().take(160).collect();
    set_context(format!(
        "{name}; n={} dims={} keys={:?} weights={} gradient={}",
        c.n,
        c.dims,
        c.keys.as_ref().map(|k| (k.2, k.3)),
        c.weights,
        c.gradient
    ));
    for precision in [32, 64] {
        loss.reset_state();
        let r = if precision == 32 {
            evaluate::<f32>(loss.as_ref(), &c)
                .map_err(|e| e.to_string())
                .map(|o| check_output(&c, &o, soft_inf))
        } else {
            evaluate::<f64>(loss.as_ref(), &c)
                .map_err(|e| e.to_string())
                .map(|o| check_output(&c, &o, soft_inf))
        };
        if let Ok(Err(f)) = r {
            let kind = name.split(['{', ' ', '(']).next().unwrap_or("");
            return Err(format!("{kind}: {f} [{name}]"));
        }
    }
    Ok(())
}

fn target_config(input: &[u8], format: Format) -> Result<(), String> {
    let text = String::from_utf8_lossy(input);
    let loss = match metric_loss_registry::from_str(&text, format) {
        Ok(loss) => loss,
        Err(e) => {
            if e.to_string().is_empty() {
                return Err("empty error message".into());
            }
            return Ok(());
        }
    };
    // An accepted config round-trips: written out and read back, it is the same config.
    let config = loss
        .get_config()
        .map_err(|e| format!("get_config failed: {e}"))?;
    let written = loss
        .to_config_string(format)
        .map_err(|e| format!("to_config_string failed on an accepted config: {e}"))?;
    let again = metric_loss_registry::from_str(&written, format)
        .map_err(|e| format!("re-reading a written config failed: {e}\n{written}"))?;
    let config2 = again.get_config().map_err(|e| e.to_string())?;
    if config != config2 {
        return Err(format!(
            "config changed in a round trip: {config} vs {config2}"
        ));
    }
    // And the loss evaluates a small batch.
    let x = [1.0f32, 0.0, 0.8, 0.6, 0.0, 1.0, -0.6, -0.8];
    match loss.evaluate(&[0, 0, 1, 2], &x, 2) {
        Ok(out) if !out.loss.is_finite() && !out.loss.is_infinite() => {
            Err(format!("NaN loss from an accepted config: {config}"))
        }
        _ => Ok(()),
    }
}

fn target_npy(input: &[u8]) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("xtask-fuzz-npy-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join("input.npy");
    std::fs::write(&path, input).map_err(|e| format!("cannot write the input: {e}"))?;
    use metric_loss_cli::npy;
    if let Ok(m) = npy::read_embeddings(&path) {
        let (rows, cols, len) = match &m {
            npy::FloatMatrix::F32(m) => (m.rows, m.cols, m.data.len()),
            npy::FloatMatrix::F64(m) => (m.rows, m.cols, m.data.len()),
        };
        if rows.checked_mul(cols) != Some(len) {
            return Err(format!("embeddings {rows} x {cols} with {len} values"));
        }
    }
    if let Ok(labels) = npy::read_labels(&path) {
        if labels.len() > input.len() {
            return Err(format!(
                "{} labels from a {}-byte file",
                labels.len(),
                input.len()
            ));
        }
    }
    if let Ok(npy::Weights::PerExample(w)) = npy::read_weights(&path) {
        if w.iter().any(|v| !v.is_finite()) {
            return Err("non-finite weight accepted".into());
        }
    }
    Ok(())
}

fn target_mining(input: &[u8]) -> Result<(), String> {
    use metric_loss_mining::{mine_row, route_gradient, RowContext};
    let mut b = Bytes(input);
    let m = 1 + b.below(12);
    // Distances beyond ±1e300 make TF's f64 offset arithmetic (d − a) + a overflow in
    // f64 (as it does in TF); the losses turn that into an error.
    let row: Vec<f64> = (0..m)
        .map(|_| b.value())
        .filter(|v| v.abs() < 1e300 || !v.is_finite())
        .collect();
    let m = row.len().max(1);
    let row = if row.is_empty() { vec![0.0] } else { row };
    let labels: Vec<i64> = (0..m).map(|_| b.label()).collect();
    let ctx = RowContext {
        anchor: b.below(16),
        anchor_label: b.label(),
        key_labels: &labels,
        remove_diagonal: b.u8() & 1 == 0,
    };
    let pos = [PositiveStrategy::Easy, PositiveStrategy::Hard][b.below(2)];
    let neg = [
        NegativeStrategy::Easy,
        NegativeStrategy::Hard,
        NegativeStrategy::SemiHard,
    ][b.below(3)];
    let row32: Vec<f32> = cast(&row);
    let _ = mine_row(&row32, &ctx, pos, neg);
    if let Ok(mined) = mine_row(&row, &ctx, pos, neg) {
        for (value, pick) in [(mined.positive, &mined.pos), (mined.negative, &mined.neg)] {
            if !value.is_finite() {
                return Err(format!("mined value {value} from a finite row"));
            }
            let mut total = 0.0;
            route_gradient(&row, &ctx, pick, 1.0, |j, g| {
                assert!(j < m, "route_gradient: column {j} outside a row of {m}");
                total += g;
            });
            if (total - 1.0).abs() > 1e-12 {
                return Err(format!("route_gradient distributed {total} of 1"));
            }
        }
    }
    Ok(())
}

fn target_distance(input: &[u8]) -> Result<(), String> {
    let mut b = Bytes(input);
    let kind = DistanceKind::ALL[b.below(6)];
    let s = b.u8();
    let (n, m, dims) = (
        usize::from(s % 6),
        usize::from((s / 6) % 6),
        usize::from(b.u8() % 6),
    );
    let same = b.u8() & 1 == 0;
    let m = if same { n } else { m };
    let q: Vec<f64> = (0..n * dims).map(|_| b.value()).collect();
    let k: Vec<f64> = if same {
        q.clone()
    } else {
        (0..m * dims).map(|_| b.value()).collect()
    };
    let qe = Embeddings::from_row_major(&q, n, dims).map_err(|e| e.to_string())?;
    let ke = Embeddings::from_row_major(&k, m, dims).map_err(|e| e.to_string())?;
    let mut out = vec![0.0; n * m];
    // Moderate: 0 or 1e-30 ≤ |v| ≤ 1e30 (snr of rows with variance ~1e-600 is genuinely
    // beyond f64, which the losses report as `NonFiniteDistance`).
    let finite = q
        .iter()
        .chain(&k)
        .all(|v| *v == 0.0 || (v.abs() >= 1e-30 && v.abs() <= 1e30));
    match kind.matrix(qe, ke, same, &mut Vec::new(), &mut out) {
        Ok(()) if finite && dims > 0 => {
            if let Some(v) = out.iter().find(|v| !v.is_finite()) {
                return Err(format!(
                    "{kind}: non-finite distance {v} from moderate finite input"
                ));
            }
            for i in 0..n {
                for j in 0..m {
                    let (mut gq, mut gk) = (vec![0.0; dims], vec![0.0; dims]);
                    kind.pair_vjp(qe.row(i), ke.row(j), out[i * m + j], 1.0, &mut gq, &mut gk);
                    if gq.iter().chain(&gk).any(|g| !g.is_finite()) {
                        return Err(format!(
                            "{kind}: non-finite pair_vjp from moderate finite input"
                        ));
                    }
                }
            }
        }
        _ => {}
    }
    if dims > 0 {
        // A finite result, or a typed error for non-finite input (never a silent NaN).
        let mut y = vec![0.0; q.len()];
        match l2_normalize(&q, dims, &mut y) {
            Ok(()) if y.iter().any(|v| !v.is_finite()) => {
                return Err("l2_normalize: non-finite output without an error".into());
            }
            Ok(()) => {
                let mut g = vec![0.0; q.len()];
                if l2_normalize_vjp(&q, dims, &y, &mut g).is_ok()
                    && g.iter().any(|v| !v.is_finite())
                {
                    return Err("l2_normalize_vjp: non-finite output without an error".into());
                }
            }
            Err(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression test of every saved `loss` finding (`fuzz/findings/loss/`, see
    /// `fuzz/README.md`): each replays through the fuzzer's own code path and must now give
    /// finite outputs or a typed error in both precisions; and, as each was an overflow of
    /// finite inputs, at least one precision must report it as `NonFiniteResult` (except
    /// the ones in [`FINITE_SINCE_CLAMPS_DROPPED`], which must now evaluate in both).
    #[test]
    fn loss_findings_replay_without_a_finding() {
        install_quiet_panic_hook();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/findings/loss");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .expect("readable findings directory");
        files.retain(|p| p.extension().is_some_and(|x| x == "bin"));
        files.sort();
        assert!(
            files.len() >= 18,
            "expected the 18 saved findings, got {files:?}"
        );
        let failures: Vec<String> = files
            .iter()
            .filter_map(|path| {
                let bytes = std::fs::read(path).expect("readable finding");
                if let Err(f) = run_one("loss", &bytes) {
                    return Some(format!("{}: {f}", path.display()));
                }
                let name = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or_default();
                if FINITE_SINCE_CLAMPS_DROPPED.contains(&name) {
                    return (!evaluates_in_both(&bytes)).then(|| {
                        format!(
                            "{}: expected finite outputs in both precisions",
                            path.display()
                        )
                    });
                }
                (!reports_overflow(&bytes))
                    .then(|| format!("{}: no NonFiniteResult in either precision", path.display()))
            })
            .collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// Findings whose only overflow was inside the dense gradient's old clamp fix-up, which
    /// added g·x back at each clamped distance after the products had subtracted it (with g
    /// near the dtype's maximum, ∞ − ∞): clamped entries' upstream gradient is now set to 0
    /// before the products, and these inputs give finite outputs in both precisions.
    const FINITE_SINCE_CLAMPS_DROPPED: [&str; 3] =
        ["finding-1.bin", "finding-15.bin", "finding-5.bin"];

    /// Whether the loss input `bytes` evaluates without error in f32 and in f64 (outputs
    /// finite, as `run_one` has checked).
    fn evaluates_in_both(bytes: &[u8]) -> bool {
        in_both_precisions(bytes).is_some_and(|[f32, f64]| f32.is_ok() && f64.is_ok())
    }

    /// Whether the loss input `bytes` gives `LossError::NonFiniteResult` in f32 or f64.
    fn reports_overflow(bytes: &[u8]) -> bool {
        in_both_precisions(bytes).is_some_and(|results| {
            results
                .iter()
                .any(|r| matches!(r, Err(LossError::NonFiniteResult { .. })))
        })
    }

    /// The loss input `bytes` evaluated in f32 and in f64 (the loss's state reset before
    /// each); `None` when the bytes build no loss.
    fn in_both_precisions(bytes: &[u8]) -> Option<[Result<(), LossError>; 2]> {
        let mut b = Bytes(bytes);
        let (loss, _) = loss_from_bytes(&mut b).ok()?;
        let c = case_from_bytes(&mut b);
        loss.reset_state();
        let f32 = evaluate::<f32>(loss.as_ref(), &c).map(|_| ());
        loss.reset_state();
        let f64 = evaluate::<f64>(loss.as_ref(), &c).map(|_| ());
        Some([f32, f64])
    }
}
