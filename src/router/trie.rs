//! A byte trie of path prefixes: walking a request path once yields every indexed prefix of
//! it, whatever the number of routes.

use smallvec::SmallVec;

#[derive(Default, Clone)]
struct Node {
    /// Sorted by byte.
    children: Vec<(u8, u32)>,
    entries: Vec<u32>,
}

#[derive(Clone)]
pub struct Trie {
    nodes: Vec<Node>,
}

impl Default for Trie {
    fn default() -> Self {
        Trie {
            nodes: vec![Node::default()],
        }
    }
}

impl Trie {
    pub fn insert(&mut self, key: &[u8], value: u32) {
        let mut at = 0usize;
        for &b in key {
            at = match self.nodes[at].children.binary_search_by_key(&b, |c| c.0) {
                Ok(i) => self.nodes[at].children[i].1 as usize,
                Err(i) => {
                    let next = self.nodes.len() as u32;
                    self.nodes.push(Node::default());
                    self.nodes[at].children.insert(i, (b, next));
                    next as usize
                }
            };
        }
        self.nodes[at].entries.push(value);
    }

    /// Appends the values of every key that is a prefix of `path`.
    pub fn collect(&self, path: &[u8], out: &mut SmallVec<[u32; 16]>) {
        let mut at = 0usize;
        out.extend_from_slice(&self.nodes[0].entries);
        for &b in path {
            let node = &self.nodes[at];
            match node.children.binary_search_by_key(&b, |c| c.0) {
                Ok(i) => at = node.children[i].1 as usize,
                Err(_) => return,
            }
            out.extend_from_slice(&self.nodes[at].entries);
        }
    }
}

impl Trie {
    /// `collect` for keys stored lower-cased: the path is folded (ASCII) while walking.
    pub fn collect_folded(&self, path: &[u8], out: &mut SmallVec<[u32; 16]>) {
        let mut at = 0usize;
        out.extend_from_slice(&self.nodes[0].entries);
        for &b in path {
            let b = b.to_ascii_lowercase();
            let node = &self.nodes[at];
            match node.children.binary_search_by_key(&b, |c| c.0) {
                Ok(i) => at = node.children[i].1 as usize,
                Err(_) => return,
            }
            out.extend_from_slice(&self.nodes[at].entries);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_every_prefix() {
        let mut t = Trie::default();
        t.insert(b"/", 0);
        t.insert(b"/api", 1);
        t.insert(b"/api/v1", 2);
        t.insert(b"/other", 3);
        let mut out = SmallVec::new();
        t.collect(b"/api/v1/users", &mut out);
        assert_eq!(out.as_slice(), &[0, 1, 2]);
    }
}
