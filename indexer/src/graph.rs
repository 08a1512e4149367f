//! The import graph of a repository: file -> file edges with each file's imports and importers.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};

/// Directed edges between files (relative paths). Cycles are allowed; traversals visit each file
/// once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportGraph {
    imports: BTreeMap<String, Vec<String>>,
    importers: BTreeMap<String, Vec<String>>,
}

impl ImportGraph {
    /// Builds the graph from `(importer, imported)` edges; duplicates collapse.
    pub fn from_edges(edges: impl IntoIterator<Item = (String, String)>) -> ImportGraph {
        let edges: BTreeSet<(String, String)> = edges.into_iter().collect();
        let mut graph = ImportGraph::default();
        // Iterating the sorted set keeps every adjacency list sorted and free of duplicates
        // (importers are pushed in importer order for each imported file).
        for (from, to) in edges {
            graph.importers.entry(to.clone()).or_default().push(from.clone());
            graph.imports.entry(from).or_default().push(to);
        }
        graph
    }

    /// Files `path` imports directly, sorted.
    pub fn imports_of(&self, path: &str) -> &[String] {
        self.imports.get(path).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Files that import `path` directly, sorted.
    pub fn importers_of(&self, path: &str) -> &[String] {
        self.importers.get(path).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every edge `(importer, imported)`, sorted.
    pub fn edges(&self) -> impl Iterator<Item = (&str, &str)> {
        self.imports.iter().flat_map(|(from, tos)| tos.iter().map(move |to| (from.as_str(), to.as_str())))
    }

    /// Files reachable from `path` within `depth` steps, following imports, or importers when
    /// `reverse`, each once with its distance (breadth first), sorted by distance then path.
    /// `path` itself is not included, even when a cycle leads back to it.
    pub fn neighbours(&self, path: &str, reverse: bool, depth: u32) -> Vec<(String, u32)> {
        let next = if reverse { &self.importers } else { &self.imports };
        let mut seen: HashSet<&str> = HashSet::from([path]);
        let mut queue: VecDeque<(&str, u32)> = VecDeque::from([(path, 0)]);
        let mut out = Vec::new();
        while let Some((file, distance)) = queue.pop_front() {
            if distance >= depth {
                continue;
            }
            // Breadth first, so the first time a file is seen is at its shortest distance.
            for neighbour in next.get(file).into_iter().flatten() {
                if seen.insert(neighbour) {
                    out.push((neighbour.clone(), distance + 1));
                    queue.push_back((neighbour, distance + 1));
                }
            }
        }
        out.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// The import cycles: strongly connected components with more than one file, or a file that
    /// imports itself. Each cycle is sorted, and the list is sorted by its first file.
    pub fn cycles(&self) -> Vec<Vec<String>> {
        // Tarjan's algorithm with an explicit stack, so a long chain of imports cannot overflow
        // the thread's stack.
        let nodes: Vec<&str> = self
            .imports
            .keys()
            .chain(self.importers.keys())
            .map(String::as_str)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let id: BTreeMap<&str, usize> = nodes.iter().enumerate().map(|(i, n)| (*n, i)).collect();
        let succ: Vec<Vec<usize>> =
            nodes.iter().map(|n| self.imports_of(n).iter().map(|m| id[m.as_str()]).collect()).collect();
        let mut index = vec![usize::MAX; nodes.len()];
        let mut low = vec![0; nodes.len()];
        let mut on_stack = vec![false; nodes.len()];
        let mut stack = Vec::new();
        let mut counter = 0;
        let mut cycles = Vec::new();
        for start in 0..nodes.len() {
            if index[start] != usize::MAX {
                continue;
            }
            // Each frame: node and the position of the next successor to look at.
            let mut frames = vec![(start, 0usize)];
            index[start] = counter;
            low[start] = counter;
            counter += 1;
            stack.push(start);
            on_stack[start] = true;
            while let Some(&mut (node, ref mut next)) = frames.last_mut() {
                if let Some(&child) = succ[node].get(*next) {
                    *next += 1;
                    if index[child] == usize::MAX {
                        index[child] = counter;
                        low[child] = counter;
                        counter += 1;
                        stack.push(child);
                        on_stack[child] = true;
                        frames.push((child, 0));
                    } else if on_stack[child] {
                        low[node] = low[node].min(index[child]);
                    }
                    continue;
                }
                frames.pop();
                if let Some(&(parent, _)) = frames.last() {
                    low[parent] = low[parent].min(low[node]);
                }
                if low[node] == index[node] {
                    let mut component = Vec::new();
                    while let Some(member) = stack.pop() {
                        on_stack[member] = false;
                        component.push(nodes[member].to_string());
                        if member == node {
                            break;
                        }
                    }
                    if component.len() > 1 || succ[node].contains(&node) {
                        component.sort();
                        cycles.push(component);
                    }
                }
            }
        }
        cycles.sort();
        cycles
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &str)]) -> ImportGraph {
        ImportGraph::from_edges(edges.iter().map(|(a, b)| (a.to_string(), b.to_string())))
    }

    #[test]
    fn edges_are_sorted_and_deduplicated() {
        let g = graph(&[("a", "c"), ("a", "b"), ("a", "c"), ("d", "b")]);
        assert_eq!(g.imports_of("a"), ["b", "c"]);
        assert_eq!(g.importers_of("b"), ["a", "d"]);
        assert_eq!(g.imports_of("zzz"), [] as [String; 0]);
        assert_eq!(g.edges().collect::<Vec<_>>(), [("a", "b"), ("a", "c"), ("d", "b")]);
    }

    #[test]
    fn neighbours_bfs_over_a_cycle() {
        let g = graph(&[("a", "b"), ("b", "a"), ("b", "c"), ("c", "d"), ("x", "a")]);
        assert_eq!(g.neighbours("a", false, 1), [("b".to_string(), 1)]);
        assert_eq!(
            g.neighbours("a", false, 10),
            [("b".to_string(), 1), ("c".to_string(), 2), ("d".to_string(), 3)]
        );
        assert_eq!(g.neighbours("a", true, 2), [("b".to_string(), 1), ("x".to_string(), 1)]);
        assert_eq!(g.neighbours("a", false, 0), []);
        assert_eq!(g.neighbours("missing", false, 3), []);
    }

    #[test]
    fn cycles_are_strongly_connected_components() {
        let g = graph(&[("a", "b"), ("b", "a"), ("b", "c"), ("c", "d"), ("d", "c"), ("e", "e"), ("f", "a")]);
        assert_eq!(
            g.cycles(),
            vec![
                vec!["a".to_string(), "b".to_string()],
                vec!["c".to_string(), "d".to_string()],
                vec!["e".to_string()]
            ]
        );
        assert!(graph(&[("a", "b"), ("b", "c")]).cycles().is_empty());
    }

    #[test]
    fn long_chains_do_not_overflow() {
        let n = 50_000;
        let mut edges: Vec<(String, String)> =
            (0..n).map(|i| (format!("f{i:06}"), format!("f{:06}", i + 1))).collect();
        edges.push((format!("f{n:06}"), "f000000".to_string()));
        let g = ImportGraph::from_edges(edges);
        let cycles = g.cycles();
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].len(), n + 1);
        assert_eq!(g.neighbours("f000000", false, u32::MAX).len(), n);
    }
}
