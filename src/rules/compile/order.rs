//! Meta ordering: metas sorted so every meta runs after the metas it reads; metas in a
//! dependency cycle are reported as errors and dropped.

use super::Compiler;
use crate::rules::model::{Rule, Severity, Test};
use std::collections::HashMap;

impl Compiler<'_> {
    /// Topological order of the metas (dependencies first); metas in a cycle are reported and dropped.
    pub(super) fn order_metas<'r>(&mut self, metas: &[&'r Rule]) -> Vec<&'r Rule> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Active,
            Done,
            Cyclic,
        }
        let index: HashMap<&str, usize> = metas
            .iter()
            .enumerate()
            .map(|(i, r)| (r.name.as_str(), i))
            .collect();
        let deps: Vec<Vec<usize>> = metas
            .iter()
            .map(|r| {
                let mut d = Vec::new();
                if let Test::Meta(expr) = &r.test {
                    expr.tree.for_each_ref(&mut |n: &String| {
                        if let Some(&i) = index.get(n.as_str()) {
                            d.push(i);
                        }
                    });
                }
                d
            })
            .collect();
        let mut marks = vec![Mark::New; metas.len()];
        let mut order = Vec::new();
        let mut cyclic: Vec<usize> = Vec::new();
        // Iterative DFS.
        for start in 0..metas.len() {
            if marks[start] != Mark::New {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            marks[start] = Mark::Active;
            while let Some(top) = stack.last_mut() {
                let node = top.0;
                if let Some(&dep) = deps[node].get(top.1) {
                    top.1 += 1;
                    match marks[dep] {
                        Mark::New => {
                            marks[dep] = Mark::Active;
                            stack.push((dep, 0));
                        }
                        Mark::Active => {
                            // Everything on the stack from `dep` up is in a cycle.
                            let from = stack.iter().position(|&(n, _)| n == dep).unwrap_or(0);
                            for &(n, _) in &stack[from..] {
                                cyclic.push(n);
                            }
                        }
                        Mark::Cyclic => cyclic.push(node),
                        Mark::Done => {}
                    }
                } else {
                    stack.pop();
                    if cyclic.contains(&node) {
                        marks[node] = Mark::Cyclic;
                    } else {
                        marks[node] = Mark::Done;
                        order.push(node);
                    }
                }
            }
        }
        cyclic.sort_unstable();
        cyclic.dedup();
        for &i in &cyclic {
            let rule = metas[i];
            let msg = format!(
                "meta {}: dependency cycle (through {}); rule skipped",
                rule.name,
                deps[i]
                    .iter()
                    .filter(|d| cyclic.contains(d))
                    .map(|&d| metas[d].name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            self.diag(&rule.origin, Severity::Error, msg);
        }
        order
            .into_iter()
            .filter(|i| !cyclic.contains(i))
            .map(|i| metas[i])
            .collect()
    }
}
