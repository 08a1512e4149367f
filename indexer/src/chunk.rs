//! AST-aware chunking: a chunk is a unit a reader recognises (a function, a method, a class or a
//! slice of its members, a run of top-level statements), packed up to a token budget.
//!
//! How a file is cut, with a syntax tree:
//!
//! 1. The root's children are grouped into *units*: a node with the comments and decorators
//!    directly above it (no blank line between) and the `;`, `,` or same-line comment right after
//!    it. A comment separated by a blank line is a unit of its own.
//! 2. A unit within the budget becomes one *atom*. A larger one is replaced by the units of its
//!    node's children, recursively (a class by its header tokens and members, a function by its
//!    header and the statements of its body), so its first part carries its header and comments.
//!    A unit that fits alone but not with what is glued in front of it (its doc comment and
//!    `export`, its function's header) is split the same way, rather than cut off from them.
//!    A unit with no children, or nested deeper than [`MAX_SPLIT_DEPTH`] splits, is cut into
//!    lines instead; a single line over the budget is cut at whitespace. The traversal uses an
//!    explicit stack, so deep trees cannot overflow the call stack. Token counts stop at the
//!    budget, so each byte is counted at most about twice in all (once as part of an atom, once
//!    in its chunk when the chunk's count does not add up from its atoms) whatever the nesting.
//! 3. Atoms are packed in order. Every cut between two atoms has a priority: between two units
//!    (statements, declarations, members, comments), shallower first; then where a header ends
//!    and a body starts; then before a closing token; then inside a header or an expression;
//!    between lines and words of an oversized leaf after that; between a comment and what it
//!    documents last. A chunk grows while it stays within `max_tokens`; a cut is
//!    forced around the parts of a split unit (they never share a chunk with its siblings); and
//!    once a chunk holds `min_tokens` it stops at the next boundary of a declaration (function,
//!    class, method, interface ...), so small declarations merge but large ones stand alone.
//!    When the next atom does not fit, the chunk is cut at its best boundary instead of the last.
//!    Every chunk's tokens are then counted exactly, as [`count_tokens`] counts its text, and a
//!    chunk over the budget is cut again at its best boundary. The exact count is added up from
//!    the atoms' own exact counts where the whitespace between them allows it (see
//!    [`seam_raw`]); only the other chunks are scanned again.
//!
//! Without a tree (the parse was refused or timed out, or the tree does not match the text), the
//! file is cut into lines packed to the budget, preferring blank lines as cuts.
//!
//! Decisions:
//! - A single line over the budget is cut at whitespace; a run without whitespace over the budget
//!   stays whole, as an oversized chunk within one line. That is the only way a chunk exceeds
//!   `max_tokens`, and it never cuts inside a word.
//! - The symbol path lists the symbols that enclose the whole chunk, outermost first. Leading
//!   comments, decorators and `export`/`const`-like keywords are left out of the comparison, so a
//!   documented method is still inside its method's range. When the chunk also holds exactly one
//!   whole declaration below that (a function beside the imports above it), the path ends with
//!   it; a chunk of several declarations, or of statements only, stops at what encloses it.
//! - Kinds: `symbol` is exactly one whole declaration (with its comments), at any depth;
//!   `symbol_part` holds part of a split unit; `statements` is anything else from the tree
//!   (statements, several small declarations merged); `lines` comes only from line splitting.
//! - Chunks cover every non-whitespace byte of the file exactly once, in order; each starts and
//!   ends on a non-whitespace character; the gaps between them are whitespace.

use crate::extract::Symbol;
use crate::hash::ContentHash;
use crate::lang::{Language, NodeExt};
use crate::tokens::{count_tokens, milli_of_raw, raw_cost, raw_cost_within, seam_raw, tokens_of_raw};

/// Bumped whenever the chunker's output for the same input can change; stored with each file so
/// a new chunker re-chunks exactly the files chunked by an older one.
pub const CHUNKER_VERSION: u32 = 2;

/// What a chunk mostly holds. Stored as [`ChunkKind::name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkKind {
    /// One symbol (function, class, interface ...) whole.
    Symbol,
    /// Part of a symbol too large for one chunk (a run of class members, a slice of a body).
    SymbolPart,
    /// Top-level statements and small declarations merged together.
    Statements,
    /// Split by lines because no syntax tree was available or a node had no usable children.
    Lines,
}

impl ChunkKind {
    /// The stable lowercase name stored in the database.
    pub fn name(self) -> &'static str {
        match self {
            ChunkKind::Symbol => "symbol",
            ChunkKind::SymbolPart => "symbol_part",
            ChunkKind::Statements => "statements",
            ChunkKind::Lines => "lines",
        }
    }
}

/// A contiguous slice of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// 0-based position in the file.
    pub ordinal: u32,
    /// 1-based, inclusive.
    pub start_line: u32,
    pub end_line: u32,
    /// Byte range in the file text, end exclusive.
    pub start_byte: usize,
    pub end_byte: usize,
    /// Enclosing symbols joined with ` > ` (`UserService > createUser`); empty at top level.
    pub symbol_path: String,
    pub kind: ChunkKind,
    pub language: Language,
    pub token_count: u32,
    /// blake3 of the chunk's text: the embedding cache key.
    pub content_hash: ContentHash,
}

impl Chunk {
    /// The chunk's text within the file text it was cut from.
    pub fn text<'a>(&self, file_text: &'a str) -> &'a str {
        &file_text[self.start_byte..self.end_byte]
    }
}

/// Configures a [`Chunker`].
#[derive(Debug, Clone)]
pub struct ChunkerBuilder {
    max_tokens: u32,
    min_tokens: u32,
}

impl ChunkerBuilder {
    /// Upper bound on a chunk's tokens (default 512). Only a single line longer than this can
    /// exceed it.
    pub fn max_tokens(mut self, tokens: u32) -> ChunkerBuilder {
        self.max_tokens = tokens;
        self
    }

    /// Small siblings are merged until a chunk reaches at least this many tokens (default 64).
    pub fn min_tokens(mut self, tokens: u32) -> ChunkerBuilder {
        self.min_tokens = tokens;
        self
    }

    pub fn build(self) -> Chunker {
        Chunker { max_tokens: self.max_tokens.max(16), min_tokens: self.min_tokens.min(self.max_tokens) }
    }
}

/// Cuts files into chunks. Deterministic: the same input gives the same chunks.
#[derive(Debug, Clone)]
pub struct Chunker {
    max_tokens: u32,
    min_tokens: u32,
}

impl Default for Chunker {
    fn default() -> Chunker {
        Chunker::builder().build()
    }
}

impl Chunker {
    pub fn builder() -> ChunkerBuilder {
        ChunkerBuilder { max_tokens: 512, min_tokens: 64 }
    }

    pub fn max_tokens(&self) -> u32 {
        self.max_tokens
    }

    /// Chunks a file. With a tree, cuts follow the syntax; without one (the parse was refused or
    /// timed out), cuts fall on line boundaries. The chunks cover every non-blank byte of `text`
    /// exactly once, in order.
    pub fn chunk(
        &self,
        language: Language,
        text: &str,
        tree: Option<&tree_sitter::Tree>,
        symbols: &[Symbol],
    ) -> Vec<Chunk> {
        if text.trim().is_empty() {
            return Vec::new();
        }
        let mut atoms = tree.and_then(|tree| tree_atoms(text, tree, self.max_tokens)).unwrap_or_else(|| {
            let mut atoms = Vec::new();
            push_lines(text, 0, text.len(), Boundary::LINE, false, self.max_tokens, &mut atoms);
            atoms
        });
        let mut groups = self.pack(text, &atoms);
        // The last resort: an atom whose estimate fitted but whose exact count does not (a
        // comment glued to the line it documents can do that) is cut into lines, if it has more
        // than one, and everything is packed again.
        let oversized = |atoms: &[Atom], g: &Group| {
            g.end - g.start == 1
                && g.tokens > self.max_tokens
                && text[atoms[g.start].start..atoms[g.start].end].contains('\n')
        };
        if groups.iter().any(|g| oversized(&atoms, g)) {
            let mut cut = Vec::with_capacity(atoms.len() + 8);
            for g in &groups {
                if oversized(&atoms, g) {
                    let a = atoms[g.start];
                    push_lines(text, a.start, a.end, a.before, true, self.max_tokens, &mut cut);
                } else {
                    cut.extend_from_slice(&atoms[g.start..g.end]);
                }
            }
            atoms = cut;
            groups = self.pack(text, &atoms);
        }
        let lines = LineIndex::new(text);
        groups
            .iter()
            .enumerate()
            .map(|(ordinal, group)| {
                let first = &atoms[group.start];
                let last = &atoms[group.end - 1];
                let (start_byte, end_byte) = (first.start, last.end);
                let chunk_text = &text[start_byte..end_byte];
                Chunk {
                    ordinal: u32::try_from(ordinal).unwrap_or(u32::MAX),
                    start_line: lines.line_of(start_byte),
                    end_line: lines.line_of(end_byte - 1),
                    start_byte,
                    end_byte,
                    symbol_path: symbol_path(&atoms[group.start..group.end], start_byte, end_byte, symbols),
                    kind: kind_of(&atoms[group.start..group.end]),
                    language,
                    token_count: group.tokens,
                    content_hash: ContentHash::of(chunk_text.as_bytes()),
                }
            })
            .collect()
    }

    /// Packs atoms into chunks (see the module docs); returns atom index ranges with their exact
    /// token counts.
    fn pack(&self, text: &str, atoms: &[Atom]) -> Vec<Group> {
        // Estimates add up thousandths of tokens, rounded once per chunk by the exact count.
        let max = u64::from(self.max_tokens) * 1000;
        let min = u64::from(self.min_tokens) * 1000;
        let mut groups = Vec::new();
        // Estimated tokens of atoms[i..=i + k], for choosing a cut when the next atom overflows.
        let mut cumulative: Vec<u64> = Vec::new();
        let mut i = 0;
        while i < atoms.len() {
            cumulative.clear();
            let mut tokens = atoms[i].milli;
            cumulative.push(tokens);
            let mut j = i + 1;
            while j < atoms.len() {
                let before = atoms[j].before;
                if before.forced || (before.symbol && tokens >= min) {
                    break;
                }
                let next = tokens + gap_milli(&text[atoms[j - 1].end..atoms[j].start]) + atoms[j].milli;
                if next > max {
                    j = best_cut(atoms, i, j, &cumulative, min);
                    break;
                }
                tokens = next;
                cumulative.push(tokens);
                j += 1;
            }
            self.push_verified(text, atoms, i, j, &mut groups);
            i = j;
        }
        groups
    }

    /// Adds atoms[start..end] as one chunk, or as several when its exact token count is over
    /// the budget (the estimate used while packing adds up atoms and can be off at their seams).
    fn push_verified(&self, text: &str, atoms: &[Atom], start: usize, end: usize, groups: &mut Vec<Group>) {
        let mut pending = vec![(start, end)];
        while let Some((a, b)) = pending.pop() {
            // Most chunks' counts follow from their atoms' exact counts, without a second scan.
            let tokens = match composed_raw(text, &atoms[a..b]) {
                Some(raw) => tokens_of_raw(raw),
                None => count_tokens(&text[atoms[a].start..atoms[b - 1].end]),
            };
            let tokens = u32::try_from(tokens).unwrap_or(u32::MAX);
            if tokens <= self.max_tokens || b - a == 1 {
                groups.push(Group { start: a, end: b, tokens });
                continue;
            }
            // Cut at the best boundary, the one nearest the middle among equals.
            let middle = a + (b - a) / 2;
            let cut = (a + 1..b)
                .max_by_key(|&k| (atoms[k].before.priority, std::cmp::Reverse(k.abs_diff(middle))))
                .unwrap_or(middle);
            // The stack pops the first half first, keeping chunks in order.
            pending.push((cut, b));
            pending.push((a, cut));
        }
    }
}

/// The exact count of the text from the first atom's start to the last one's end, before the
/// safety margin, when every atom's own is known and every seam between two of them lets a
/// count of the whole add up to the parts (see [`seam_raw`]); `None` otherwise.
fn composed_raw(text: &str, atoms: &[Atom]) -> Option<u64> {
    let mut raw = atoms.first()?.raw?;
    for pair in atoms.windows(2) {
        raw += seam_raw(text, pair[0].end, pair[1].start)? + pair[1].raw?;
    }
    Some(raw)
}

/// A chunk under construction: a range of atoms and its exact token count.
#[derive(Debug, Clone, Copy)]
struct Group {
    start: usize,
    end: usize,
    tokens: u32,
}

/// A child node's token counts: the estimate the packer adds up ([`OVER_BUDGET`] when over the
/// budget) and the exact count before the safety margin (`None` when over).
#[derive(Debug, Clone, Copy, Default)]
struct Count {
    milli: u64,
    raw: Option<u64>,
}

/// The cut to make when atoms[i..j] fit but atoms[j] does not: a boundary `k` in `i + 1..=j`
/// that leaves at least `min` tokens before it if possible, with the best priority, the latest
/// among equals.
fn best_cut(atoms: &[Atom], i: usize, j: usize, cumulative: &[u64], min: u64) -> usize {
    (i + 1..=j).max_by_key(|&k| (cumulative[k - i - 1] >= min, atoms[k].before.priority, k)).unwrap_or(j)
}

/// Estimated thousandths of tokens of the whitespace between two atoms: a line break and
/// indentation are about two tokens; a single space usually merges into the next token.
fn gap_milli(gap: &str) -> u64 {
    if gap.contains('\n') {
        2000
    } else if gap.len() > 1 {
        1000
    } else {
        0
    }
}

/// The estimate recorded for a text found to be over the budget (its exact size is not needed).
const OVER_BUDGET: u64 = u64::MAX / 4;

/// Deeper than this many nested splits, an oversized node is cut into lines instead: it bounds
/// the work on pathological nesting, and chunks that deep would not be readable units anyway.
const MAX_SPLIT_DEPTH: usize = 48;

/// An indivisible slice of the file that the packer places into chunks.
#[derive(Debug, Clone, Copy)]
struct Atom {
    /// Byte range, trimmed: it starts and ends on non-whitespace.
    start: usize,
    end: usize,
    /// Estimated thousandths of tokens.
    milli: u64,
    /// The exact count of its text before the safety margin, when known: an atom of one node or
    /// line, or of nodes whose seams add up (see [`seam_raw`]).
    raw: Option<u64>,
    /// The cut between the previous atom and this one.
    before: Boundary,
    origin: Origin,
    /// Part of a unit that was too large and was split.
    in_split: bool,
    /// The range compared with symbol ranges for the symbol path; `None` for comments,
    /// decorators, `export`-like keywords and trailing punctuation.
    core: Option<(usize, usize)>,
}

/// Where an atom comes from; decides the chunk kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// A whole unit (statement, declaration, member, comment).
    Unit { symbol: bool },
    /// Any other node: a keyword, a name, a header part, an expression.
    Node,
    /// A line, or a word of an overlong line.
    Line,
}

/// How good a cut between two atoms is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Boundary {
    /// Higher is a better place to cut.
    priority: u8,
    /// The packer always cuts here.
    forced: bool,
    /// Next to a declaration: the packer cuts here once a chunk has `min_tokens`.
    symbol: bool,
}

impl Boundary {
    /// Between a comment or decorator and what it documents, or a node and its trailing `;`.
    const ATTACHED: Boundary = Boundary { priority: 0, forced: false, symbol: false };
    /// Between two words of an overlong line.
    const WORD: Boundary = Boundary { priority: 1, forced: false, symbol: false };
    /// Between two lines.
    const LINE: Boundary = Boundary { priority: 5, forced: false, symbol: false };
    /// Between two lines separated by a blank line.
    const PARAGRAPH: Boundary = Boundary { priority: 6, forced: false, symbol: false };

    /// Between two siblings `depth` splits deep. Best between two units; then where a header
    /// ends and a body of units starts (`class A {` | members); then before a closing token
    /// (`}`); worst inside a header or an expression (`export` | `function`).
    fn between(depth: usize, previous: &Unit, next: &Unit) -> Boundary {
        let depth = depth.min(20) as u8;
        let units = previous.unit && next.unit;
        let priority = match (previous.unit, next.unit) {
            // `export` | `function f() {`: the keyword belongs to what follows.
            _ if previous.wrapper => 2,
            (true, true) => 70 - depth,
            (false, true) => 40 - depth,
            (true, false) => 15,
            (false, false) => 10,
        };
        Boundary {
            priority,
            forced: units && (previous.oversized || next.oversized),
            symbol: units && (previous.symbol || next.symbol),
        }
    }
}

/// Siblings grouped with their attachments: children[first..main] lead (comments, decorators),
/// children[main + 1..=last] trail (`;`, `,`, a same-line comment).
#[derive(Debug, Clone, Copy)]
struct Unit {
    first: usize,
    main: usize,
    last: usize,
    /// Trimmed byte range of the whole unit.
    start: usize,
    end: usize,
    /// Exact tokens and the unrounded estimate (both saturated when over the budget).
    tokens: u32,
    milli: u64,
    /// The exact count of its text before the safety margin, when it adds up from its children.
    raw: Option<u64>,
    oversized: bool,
    /// A statement, declaration, member or comment (as opposed to a token or an expression).
    unit: bool,
    /// A declaration: function, class, method, interface ...
    symbol: bool,
    /// A keyword that leads a declaration: `export`, `default`, `declare`, `const` ...
    wrapper: bool,
    core: Option<(usize, usize)>,
    /// Estimated thousandths of tokens glued in front of it (see [`group_units`]).
    carry: u64,
}

/// Work left for the tree traversal, kept on an explicit stack.
enum Work<'t> {
    /// Split a node: its children become units `depth` splits deep. `carry` is the estimate of
    /// what must stay glued in front of its first child (the comments and keywords before it).
    Expand {
        node: tree_sitter::Node<'t>,
        depth: usize,
        before: Boundary,
        carry: u64,
    },
    Atom(Atom),
    /// Cut a byte range into lines.
    Lines {
        start: usize,
        end: usize,
        before: Boundary,
        in_split: bool,
    },
}

/// The atoms of a file from its syntax tree, or `None` when the tree does not fit the text.
fn tree_atoms(text: &str, tree: &tree_sitter::Tree, max_tokens: u32) -> Option<Vec<Atom>> {
    let root = tree.root_node();
    if root.end_byte() > text.len() {
        return None;
    }
    let mut atoms = Vec::new();
    let first = Boundary { priority: 70, forced: false, symbol: false };
    let mut stack = vec![Work::Expand { node: root, depth: 0, before: first, carry: 0 }];
    let mut children = Vec::new();
    let mut units = Vec::new();
    let mut child_milli = Vec::new();
    while let Some(work) = stack.pop() {
        match work {
            Work::Atom(atom) => atoms.push(atom),
            Work::Lines { start, end, before, in_split } => {
                push_lines(text, start, end, before, in_split, max_tokens, &mut atoms)
            }
            Work::Expand { node, depth, before, carry } => {
                children.clear();
                children.extend(node.children(&mut node.walk()));
                group_units(text, &children, carry, max_tokens, &mut units, &mut child_milli)?;
                let in_split = depth > 0;
                // Pushed in reverse so they pop in order.
                for k in (0..units.len()).rev() {
                    let unit = units[k];
                    let before = if k == 0 { before } else { Boundary::between(depth, &units[k - 1], &unit) };
                    push_unit(text, &children, &child_milli, &unit, depth, before, in_split, &mut stack)?;
                }
            }
        }
    }
    fill_gaps(text, atoms, max_tokens)
}

/// Schedules one unit: as an atom when it fits, split into its node's children or into lines
/// when it does not.
#[allow(clippy::too_many_arguments)]
fn push_unit<'t>(
    text: &str,
    children: &[tree_sitter::Node<'t>],
    child_milli: &[Count],
    unit: &Unit,
    depth: usize,
    before: Boundary,
    in_split: bool,
    stack: &mut Vec<Work<'t>>,
) -> Option<()> {
    if !unit.oversized {
        let origin = if unit.unit { Origin::Unit { symbol: unit.symbol } } else { Origin::Node };
        stack.push(Work::Atom(Atom {
            start: unit.start,
            end: unit.end,
            milli: unit.milli,
            raw: unit.raw,
            before,
            origin,
            in_split,
            core: unit.core,
        }));
        return Some(());
    }
    let main = children[unit.main];
    if main.child_count() == 0 || depth + 1 > MAX_SPLIT_DEPTH {
        stack.push(Work::Lines { start: unit.start, end: unit.end, before, in_split });
        return Some(());
    }
    // Trailing attachments, the node's children, then leading attachments (reversed order).
    for k in (unit.main + 1..=unit.last).rev() {
        push_piece(text, children[k], child_milli[k], Boundary::ATTACHED, true, stack)?;
    }
    let before_main = if unit.first < unit.main { Boundary::ATTACHED } else { before };
    // Leading attachments first, so what they add to the carry is known.
    let mut leading = Vec::new();
    let mut carry = unit.carry;
    for k in unit.first..unit.main {
        let before = if k == unit.first { before } else { Boundary::ATTACHED };
        carry =
            carry.saturating_add(push_piece(text, children[k], child_milli[k], before, true, &mut leading)?);
    }
    stack.push(Work::Expand { node: main, depth: depth + 1, before: before_main, carry });
    stack.extend(leading.into_iter().rev());
    Some(())
}

/// Schedules an attachment of a split unit (counted as `count`) as an atom of its own, or as
/// lines when over the budget; returns the estimate, 0 for lines (which the packer places
/// freely).
fn push_piece(
    text: &str,
    node: tree_sitter::Node<'_>,
    count: Count,
    before: Boundary,
    in_split: bool,
    stack: &mut Vec<Work<'_>>,
) -> Option<u64> {
    let Some((start, end)) = trim(text, node.start_byte(), node.end_byte())? else {
        return Some(0);
    };
    let Count { milli, raw } = count;
    if milli == OVER_BUDGET {
        stack.push(Work::Lines { start, end, before, in_split });
        return Some(0);
    }
    stack.push(Work::Atom(Atom {
        start,
        end,
        milli,
        raw,
        before,
        origin: Origin::Node,
        in_split,
        core: None,
    }));
    Some(milli)
}

/// Groups sibling nodes into units (see [`Unit`]) and estimates each child's tokens into
/// `child_milli` ([`OVER_BUDGET`] when over); `None` when a range does not fit the text.
///
/// Also marks as oversized the units that fit alone but not with what is glued in front of them:
/// a declaration with its doc comment and `export`, a body after its function's header.
/// Splitting those, rather than cutting before them, keeps comments and headers with what they
/// introduce. `carry` is the estimate glued in front of the first child; each unit's own carry
/// (reset after every statement-like unit) is stored in it.
fn group_units(
    text: &str,
    children: &[tree_sitter::Node<'_>],
    carry: u64,
    max_tokens: u32,
    units: &mut Vec<Unit>,
    child_milli: &mut Vec<Count>,
) -> Option<()> {
    units.clear();
    // Index of the first comment or decorator waiting for the node it documents.
    let mut pending: Option<usize> = None;
    for (idx, child) in children.iter().enumerate() {
        if pending.is_none()
            && let Some(last) = units.last_mut()
            && is_trailing(text, *child, children[last.last].end_byte())?
        {
            last.last = idx;
            continue;
        }
        let blank_before =
            idx > 0 && blank_line_between(text, children[idx - 1].end_byte(), child.start_byte())?;
        if let Some(p) = pending
            && blank_before
        {
            // A blank line detaches the comments above from what follows.
            for k in p..idx {
                units.push(Unit::bare(k));
            }
            pending = None;
        }
        if is_comment(*child) || child.kind_name() == "decorator" {
            pending.get_or_insert(idx);
            continue;
        }
        let first = pending.take().unwrap_or(idx);
        units.push(Unit::bare_with(first, idx));
    }
    if let Some(p) = pending {
        for k in p..children.len() {
            units.push(Unit::bare(k));
        }
    }
    let budget = u64::from(max_tokens) * 1000;
    child_milli.clear();
    child_milli.resize(children.len(), Count::default());
    let mut glued = carry;
    let mut kept = 0;
    for k in 0..units.len() {
        let mut unit = units[k];
        let Some((start, end)) =
            trim(text, children[unit.first].start_byte(), children[unit.last].end_byte())?
        else {
            continue;
        };
        let main = children[unit.main];
        let splittable = main.child_count() > 0;
        // Each child is counted once, its attachments' counts kept for when the unit is split.
        // Counting stops past the budget (for a node that can be split, the budget left after
        // what is glued before it): a large unit is split whatever its exact size.
        let mut total: u64 = 0;
        let mut over = false;
        // The exact count of the unit's text, and where the last child counted ends.
        let mut raw = Some(0);
        let mut previous_end = None;
        for idx in unit.first..=unit.last {
            let node = children[idx];
            if idx > unit.first {
                total += gap_milli(text.get(
                    children[idx - 1].end_byte()..node.start_byte().max(children[idx - 1].end_byte()),
                )?);
            }
            let limit = if idx == unit.main && splittable {
                budget.saturating_sub(glued).saturating_sub(total)
            } else {
                budget
            };
            let count = match trim(text, node.start_byte(), node.end_byte())? {
                None => {
                    raw = None;
                    Count { milli: 0, raw: None }
                }
                Some((s, e)) => {
                    let child_raw = raw_cost_within(&text[s..e], limit);
                    let seam = match previous_end {
                        Some(previous) => seam_raw(text, previous, s),
                        None => Some(0),
                    };
                    raw = raw.zip(seam).zip(child_raw).map(|((r, g), c)| r + g + c);
                    previous_end = Some(e);
                    match child_raw {
                        Some(child_raw) => Count { milli: milli_of_raw(child_raw), raw: Some(child_raw) },
                        None => {
                            over = true;
                            Count { milli: OVER_BUDGET, raw: None }
                        }
                    }
                }
            };
            child_milli[idx] = count;
            total = total.saturating_add(count.milli);
        }
        unit.start = start;
        unit.end = end;
        unit.carry = glued;
        unit.milli = total;
        unit.raw = raw;
        unit.tokens = tokens_of(total);
        unit.oversized = over || unit.tokens > max_tokens;
        unit.unit = is_unit(main);
        unit.wrapper = is_wrapper_keyword(main);
        if main.is_named() && !is_comment(main) && main.kind_name() != "decorator" {
            let decl = declaration(main);
            unit.symbol = is_symbol(decl);
            unit.core = Some((decl.start_byte(), decl.end_byte()));
        } else if !main.is_named() && !unit.wrapper {
            unit.core = Some((main.start_byte(), main.end_byte()));
        }
        glued = if unit.unit { 0 } else { glued.saturating_add(unit.milli) };
        units[kept] = unit;
        kept += 1;
    }
    units.truncate(kept);
    Some(())
}

impl Unit {
    fn bare(index: usize) -> Unit {
        Unit::bare_with(index, index)
    }

    fn bare_with(first: usize, main: usize) -> Unit {
        Unit {
            first,
            main,
            last: main,
            start: 0,
            end: 0,
            tokens: 0,
            milli: 0,
            raw: None,
            oversized: false,
            unit: false,
            symbol: false,
            wrapper: false,
            core: None,
            carry: 0,
        }
    }
}

/// A `;` or `,` after a node, or a comment on the line where the previous unit ends.
fn is_trailing(text: &str, node: tree_sitter::Node<'_>, previous_end: usize) -> Option<bool> {
    if !node.is_named() && matches!(node.kind_name(), ";" | ",") {
        return Some(true);
    }
    if is_comment(node) {
        let gap = text.get(previous_end..node.start_byte())?;
        return Some(!gap.contains('\n'));
    }
    Some(false)
}

fn blank_line_between(text: &str, start: usize, end: usize) -> Option<bool> {
    let gap = text.get(start..end.max(start))?;
    Some(memchr::memchr_iter(b'\n', gap.as_bytes()).nth(1).is_some())
}

fn is_comment(node: tree_sitter::Node<'_>) -> bool {
    matches!(node.kind_name(), "comment" | "html_comment")
}

/// Keywords that lead a declaration without being part of the symbol's own range in some
/// extractions (`export`, `export default`, `declare`, `const`).
fn is_wrapper_keyword(node: tree_sitter::Node<'_>) -> bool {
    !node.is_named() && matches!(node.kind_name(), "export" | "default" | "declare" | "const" | "let" | "var")
}

/// Statements, declarations, members and comments: the nodes a cut between two of is clean.
fn is_unit(node: tree_sitter::Node<'_>) -> bool {
    let kind = node.kind_name();
    node.is_named()
        && (kind.ends_with("_statement")
            || kind.ends_with("_declaration")
            || matches!(
                kind,
                "comment"
                    | "html_comment"
                    | "hash_bang_line"
                    | "method_definition"
                    | "public_field_definition"
                    | "field_definition"
                    | "method_signature"
                    | "property_signature"
                    | "abstract_method_signature"
                    | "function_signature"
                    | "index_signature"
                    | "construct_signature"
                    | "call_signature"
                    | "class_static_block"
                    | "pair"
                    | "switch_case"
                    | "switch_default"
                    | "jsx_element"
                    | "jsx_self_closing_element"
                    | "enum_assignment"
                    | "module"
                    | "internal_module"
            ))
}

/// The declaration a statement stands for: through `export`, `declare`, a namespace's
/// expression statement and a declaration of a single variable.
fn declaration(node: tree_sitter::Node<'_>) -> tree_sitter::Node<'_> {
    let mut node = node;
    // A few wrappers at most; the bound keeps odd trees from looping.
    for _ in 0..4 {
        let inner = match node.kind_name() {
            "export_statement" => node.field("declaration").or_else(|| node.field("value")),
            "ambient_declaration" => node.named_child(0),
            "expression_statement" => node.named_child(0).filter(|n| n.kind_name() == "internal_module"),
            "lexical_declaration" | "variable_declaration" => {
                let mut cursor = node.walk();
                let mut declarators =
                    node.named_children(&mut cursor).filter(|n| n.kind_name() == "variable_declarator");
                match (declarators.next(), declarators.next()) {
                    (Some(only), None) => Some(only),
                    _ => None,
                }
            }
            _ => None,
        };
        match inner {
            Some(inner) => node = inner,
            None => break,
        }
    }
    node
}

/// Whether a (unwrapped) node declares a function, class, method, interface, enum, type alias
/// or namespace, or binds a function or class to a name.
fn is_symbol(node: tree_sitter::Node<'_>) -> bool {
    match node.kind_name() {
        "function_declaration"
        | "generator_function_declaration"
        | "function_signature"
        | "class_declaration"
        | "abstract_class_declaration"
        | "interface_declaration"
        | "enum_declaration"
        | "type_alias_declaration"
        | "module"
        | "internal_module"
        | "method_definition"
        | "method_signature"
        | "abstract_method_signature"
        | "function_expression"
        | "function"
        | "arrow_function"
        | "generator_function"
        | "class" => true,
        "variable_declarator" | "public_field_definition" | "field_definition" | "pair" => {
            node.field("value").is_some_and(|value| {
                matches!(
                    value.kind_name(),
                    "arrow_function" | "function_expression" | "function" | "generator_function" | "class"
                )
            })
        }
        _ => false,
    }
}

/// Cuts `text[start..end]` into line atoms (word atoms for lines over the budget).
fn push_lines(
    text: &str,
    start: usize,
    end: usize,
    before: Boundary,
    in_split: bool,
    max_tokens: u32,
    atoms: &mut Vec<Atom>,
) {
    let mut boundary = before;
    let mut first = true;
    let mut previous_end = start;
    let mut line_start = start;
    while line_start < end {
        let line_end =
            memchr::memchr(b'\n', &text.as_bytes()[line_start..end]).map_or(end, |k| line_start + k);
        if let Some(Some((s, e))) = trim(text, line_start, line_end) {
            if !first {
                let paragraph = blank_line_between(text, previous_end, s).unwrap_or(false);
                boundary = if paragraph { Boundary::PARAGRAPH } else { Boundary::LINE };
            }
            match raw_cost_within(&text[s..e], u64::from(max_tokens) * 1000) {
                Some(raw) => atoms.push(Atom {
                    start: s,
                    end: e,
                    milli: milli_of_raw(raw),
                    raw: Some(raw),
                    before: boundary,
                    origin: Origin::Line,
                    in_split,
                    core: Some((s, e)),
                }),
                None => push_words(text, s, e, boundary, in_split, atoms),
            }
            first = false;
            previous_end = e;
        }
        line_start = line_end + 1;
    }
}

/// Cuts an overlong line at whitespace into word atoms.
fn push_words(text: &str, start: usize, end: usize, before: Boundary, in_split: bool, atoms: &mut Vec<Atom>) {
    let mut boundary = before;
    let mut word_start: Option<usize> = None;
    let line = &text[start..end];
    for (offset, c) in line.char_indices().chain(std::iter::once((line.len(), ' '))) {
        match (c.is_whitespace(), word_start) {
            (false, None) => word_start = Some(start + offset),
            (true, Some(s)) => {
                let e = start + offset;
                let raw = raw_cost(&text[s..e]);
                atoms.push(Atom {
                    start: s,
                    end: e,
                    milli: milli_of_raw(raw),
                    raw: Some(raw),
                    before: boundary,
                    origin: Origin::Line,
                    in_split,
                    core: Some((s, e)),
                });
                boundary = Boundary::WORD;
                word_start = None;
            }
            _ => {}
        }
    }
}

/// Checks that atoms are in order and within the text, and covers any non-whitespace text
/// between them (which a well-formed tree never leaves) with line atoms.
fn fill_gaps(text: &str, atoms: Vec<Atom>, max_tokens: u32) -> Option<Vec<Atom>> {
    let mut out = Vec::with_capacity(atoms.len());
    let mut position = 0;
    for atom in atoms {
        if atom.start < position || atom.end <= atom.start || text.get(atom.start..atom.end).is_none() {
            return None;
        }
        if !text[position..atom.start].trim().is_empty() {
            push_lines(text, position, atom.start, Boundary::LINE, false, max_tokens, &mut out);
        }
        position = atom.end;
        out.push(atom);
    }
    if !text[position..].trim().is_empty() {
        push_lines(text, position, text.len(), Boundary::LINE, false, max_tokens, &mut out);
    }
    Some(out)
}

/// `text[start..end]` without whitespace at its edges: `None` when the range does not fit the
/// text, `Some(None)` when it is all whitespace.
fn trim(text: &str, start: usize, end: usize) -> Option<Option<(usize, usize)>> {
    let slice = text.get(start..end)?;
    let leading = slice.len() - slice.trim_start().len();
    let trimmed = slice.trim();
    if trimmed.is_empty() {
        return Some(None);
    }
    Some(Some((start + leading, start + leading + trimmed.len())))
}

/// Whole tokens from thousandths, as [`count_tokens`] rounds them.
fn tokens_of(milli: u64) -> u32 {
    u32::try_from(milli.div_ceil(1000)).unwrap_or(u32::MAX)
}

/// What a chunk made of `atoms` mostly holds.
fn kind_of(atoms: &[Atom]) -> ChunkKind {
    if atoms.iter().all(|a| a.origin == Origin::Line) {
        ChunkKind::Lines
    } else if let [Atom { origin: Origin::Unit { symbol: true }, .. }] = atoms {
        ChunkKind::Symbol
    } else if atoms.iter().any(|a| a.in_split) {
        ChunkKind::SymbolPart
    } else {
        ChunkKind::Statements
    }
}

/// The names of the symbols that enclose the chunk's core, outermost first, joined by ` > `.
fn symbol_path(atoms: &[Atom], start: usize, end: usize, symbols: &[Symbol]) -> String {
    let (core_start, core_end) = atoms
        .iter()
        .filter_map(|a| a.core)
        .fold(None, |acc: Option<(usize, usize)>, (s, e)| match acc {
            None => Some((s, e)),
            Some((a, b)) => Some((a.min(s), b.max(e))),
        })
        .unwrap_or((start, end));
    let mut enclosing: Vec<usize> = (0..symbols.len())
        .filter(|&i| symbols[i].start_byte <= core_start && core_end <= symbols[i].end_byte)
        .collect();
    enclosing.sort_by_key(|&i| (symbols[i].start_byte, std::cmp::Reverse(symbols[i].end_byte)));
    // A chunk holding exactly one whole declaration beside statements (imports, a constant) is
    // named after it: `hashPassword`, not nothing. Several declarations leave the path as is.
    let innermost = enclosing.last().copied();
    let mut whole = symbols.iter().enumerate().filter(|(i, s)| {
        s.parent == innermost && Some(*i) != innermost && start <= s.start_byte && s.end_byte <= end
    });
    let single = match (whole.next(), whole.next()) {
        (Some((i, _)), None) => Some(i),
        _ => None,
    };
    let mut path = String::new();
    for i in enclosing.into_iter().chain(single) {
        if !path.is_empty() {
            path.push_str(" > ");
        }
        path.push_str(&symbols[i].name);
    }
    path
}

/// Maps byte offsets to 1-based line numbers.
struct LineIndex {
    /// Byte offset where each line starts.
    starts: Vec<usize>,
}

impl LineIndex {
    fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(memchr::memchr_iter(b'\n', text.as_bytes()).map(|k| k + 1));
        LineIndex { starts }
    }

    /// The 1-based line holding byte `offset`.
    fn line_of(&self, offset: usize) -> u32 {
        let line = self.starts.partition_point(|&s| s <= offset);
        u32::try_from(line).unwrap_or(u32::MAX)
    }
}
