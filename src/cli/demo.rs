//! `mkclone demo`.

use super::output::{Failure, pattern_table, print_json};

pub fn run(json: bool) -> Result<(), Failure> {
    let banner = "mkclone demo: REHEARSAL on temporary simulated cards (keys in plain files in a temporary directory)";
    if json {
        // Standard output carries the document alone.
        eprintln!("{banner}");
    } else {
        println!("{banner}\n");
    }
    let report = mkclone::demo::run(move |r| {
        if !json {
            for a in &r.actions {
                println!("  phase {:<3} {:<8} {a}", r.phase, r.node);
            }
        }
    })
    .map_err(|e| Failure::failed(format!("demo: {e}")))?;
    if json {
        print_json("demo", &report)?;
    } else {
        println!(
            "\n{}",
            pattern_table(
                &report.summary.nodes,
                "source",
                &["target1".into(), "target2".into()]
            )
        );
        println!("Journal final hash: {}", report.summary.journal_head);
    }
    Ok(())
}
