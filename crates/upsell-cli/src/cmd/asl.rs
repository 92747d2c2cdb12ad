//! `upsell asl`: validate and run Amazon States Language definitions with the local engine.
//!
//! Contract used by outside checks (keep it stable):
//! - `upsell asl validate FILE...`: exit 0 when every file is valid; exit 1 listing every problem.
//! - `upsell asl exec DEFINITION --input FILE [--clock virtual|real] [--mock MOCKCONFIG --test-case NAME] [--history]`:
//!   prints one JSON line `{"status":"SUCCEEDED","output":...}` or
//!   `{"status":"FAILED","error":...,"cause":...}` (exit 0 for both); exit 2 for an invalid definition.
//!   `--history` then prints the history events, one JSON object per line.

use anyhow::{Context as _, bail};
use clap::{Subcommand, ValueEnum};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use upsell_asl::{
    Engine, MemorySink, ParseOptions, StartOptions, StateMocks, VirtualClock, parse_str,
};

/// `upsell asl ...`
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: AslCommand,
}

#[derive(Debug, Subcommand)]
enum AslCommand {
    /// Check definitions the way CreateStateMachine does; list every problem.
    Validate {
        /// Definition files (JSON).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Run a definition once and print its result as one JSON line.
    Exec {
        /// Definition file (JSON).
        definition: PathBuf,
        /// Execution input (JSON file).
        #[arg(long)]
        input: PathBuf,
        /// Real time, or a virtual clock on which Wait states and retry intervals pass instantly.
        #[arg(long, value_enum, default_value_t = ClockKind::Real)]
        clock: ClockKind,
        /// Step Functions Local MockConfig file with mocked task responses.
        #[arg(long, requires = "test_case")]
        mock: Option<PathBuf>,
        /// Test case in the MockConfig (`Case` or `StateMachine.Case`).
        #[arg(long, requires = "mock")]
        test_case: Option<String>,
        /// Also print the execution history events (one JSON line each).
        #[arg(long)]
        history: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ClockKind {
    Virtual,
    Real,
}

fn exit_with(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    std::process::exit(code)
}

/// Runs `upsell asl`.
pub fn run(args: Args, _ctx: &super::Context) -> anyhow::Result<()> {
    match args.command {
        AslCommand::Validate { files } => {
            let mut bad = false;
            for f in &files {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?;
                match parse_str(&text, ParseOptions::default()) {
                    Ok(_) => outln!("{}: valid", f.display()),
                    Err(e) => {
                        bad = true;
                        for p in &e.problems {
                            outln!(
                                "{}: {} at {}: {}",
                                f.display(),
                                p.code,
                                p.location,
                                p.message
                            );
                        }
                    }
                }
            }
            if bad {
                exit_with(1);
            }
            Ok(())
        }
        AslCommand::Exec {
            definition,
            input,
            clock,
            mock,
            test_case,
            history,
        } => {
            let text = std::fs::read_to_string(&definition)
                .with_context(|| format!("reading {}", definition.display()))?;
            let input_text = std::fs::read_to_string(&input)
                .with_context(|| format!("reading {}", input.display()))?;
            let input: serde_json::Value = serde_json::from_str(&input_text)
                .with_context(|| format!("{} is not valid JSON", input.display()))?;
            let sm = match parse_str(&text, ParseOptions::default()) {
                Ok(sm) => sm,
                Err(e) => {
                    for p in &e.problems {
                        eprintln!(
                            "{}: {} at {}: {}",
                            definition.display(),
                            p.code,
                            p.location,
                            p.message
                        );
                    }
                    exit_with(2);
                }
            };
            let mocks = match (mock, test_case) {
                (Some(path), Some(case)) => {
                    let cfg: serde_json::Value = serde_json::from_str(
                        &std::fs::read_to_string(&path)
                            .with_context(|| format!("reading {}", path.display()))?,
                    )
                    .with_context(|| format!("{} is not valid JSON", path.display()))?;
                    Some(StateMocks::from_mock_config(&cfg, &case).map_err(anyhow::Error::msg)?)
                }
                (None, None) => None,
                _ => bail!("--mock and --test-case go together"),
            };
            let sink = Arc::new(MemorySink::new());
            let sm_name = definition
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("StateMachine")
                .trim_end_matches(".asl")
                .to_string();
            let fut = |clock: Arc<dyn upsell_asl::Clock>| {
                let mut b = Engine::builder().clock(clock).history(sink.clone());
                if let Some(m) = mocks.clone() {
                    b = b.mocks(m);
                }
                let engine = b.build();
                let sm = sm.clone();
                let opts = StartOptions {
                    name: None,
                    state_machine_name: Some(sm_name.clone()),
                    role_arn: None,
                };
                async move { engine.execute(&sm, input, opts).await }
            };
            let run = match clock {
                ClockKind::Virtual => {
                    let rt = upsell_asl::virtual_runtime()?;
                    rt.block_on(async {
                        fut(Arc::new(VirtualClock::new(chrono::Utc::now()))).await
                    })
                }
                ClockKind::Real => {
                    let rt = tokio::runtime::Builder::new_multi_thread()
                        .enable_all()
                        .build()?;
                    rt.block_on(fut(Arc::new(upsell_asl::RealClock)))
                }
            };
            outln!("{}", run.outcome.to_json());
            if history {
                for e in sink.events(&run.arn) {
                    outln!("{}", e.to_json());
                }
            }
            Ok(())
        }
    }
}
