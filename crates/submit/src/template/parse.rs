//! Parsing SES's Handlebars subset into a tree. The parser keeps its own stack of open blocks
//! (it never recurses), refuses nesting deeper than [`MAX_DEPTH`], and refuses everything
//! outside the subset (partials, inline partials, decorators, helpers, raw blocks) by name, so a
//! template that parses here can only do what SES's templates do.

use super::RenderError;

/// Most blocks open inside one another (`{{else if}}` counts as one more).
pub const MAX_DEPTH: usize = 32;

/// A path expression: `name`, `a.b.c`, `this`, `../name`, `@index`, `@root.a`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path {
    /// As written, for error messages.
    pub text: String,
    /// How many `{{#each}}` levels up (`../`).
    pub up: usize,
    /// Starts at the data's top (`@root`).
    pub root: bool,
    /// `@index`, `@key`, `@first` or `@last` of the enclosing `{{#each}}`.
    pub data: Option<DataVar>,
    /// Names (or array indexes) below the starting point.
    pub segments: Vec<String>,
}

/// The loop variables of `{{#each}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DataVar {
    Index,
    Key,
    First,
    Last,
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    /// Literal text.
    Text(String),
    /// `{{path}}` (escaped in HTML) or `{{{path}}}` / `{{&path}}` (never escaped).
    Value { path: Path, escape: bool },
    /// `{{#if}}` (or `{{#unless}}`, negated) with its `{{else}}` branch.
    If { cond: Path, negate: bool, then: Vec<Node>, otherwise: Vec<Node> },
    /// `{{#each}}` over an array or an object's values, `{{else}}` when there is nothing.
    Each { over: Path, body: Vec<Node>, otherwise: Vec<Node> },
}

fn invalid(msg: impl Into<String>) -> RenderError {
    RenderError::InvalidTemplate(msg.into())
}

const SUBSET: &str = "SES templates take variables, {{#if}}, {{#unless}}, {{#each}} and {{else}}";

/// What a tag is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Tag {
    Comment,
    Value { path: Path, escape: bool },
    Open { kind: BlockKind, arg: Path },
    Else,
    ElseChain { kind: BlockKind, arg: Path },
    Close(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    If,
    Unless,
    Each,
}

impl BlockKind {
    fn name(self) -> &'static str {
        match self {
            BlockKind::If => "if",
            BlockKind::Unless => "unless",
            BlockKind::Each => "each",
        }
    }
}

/// A token: literal text (the original and the part kept after whitespace control), or a tag.
#[derive(Debug)]
enum Token {
    Text { orig: String, start: usize, end: usize },
    Tag { tag: Tag, strip_before: bool, strip_after: bool, line: usize },
}

fn is_id_char(c: char) -> bool {
    !c.is_whitespace() && !"!\"#%&'()*+,./;<=>@[\\]^`{|}~".contains(c)
}

/// Parse a path expression.
fn parse_path(s: &str, line: usize) -> Result<Path, RenderError> {
    let bad = |why: &str| invalid(format!("line {line}: '{s}' {why}"));
    let mut path = Path { text: s.to_string(), up: 0, root: false, data: None, segments: vec![] };
    let mut rest = s;
    while let Some(r) = rest.strip_prefix("../") {
        path.up += 1;
        rest = r;
    }
    if rest == ".." {
        path.up += 1;
        rest = "";
    }
    if let Some(r) = rest.strip_prefix('@') {
        let (name, tail) = match r.find(['.', '/']) {
            Some(i) => (&r[..i], &r[i + 1..]),
            None => (r, ""),
        };
        match name {
            "root" => path.root = true,
            "index" | "key" | "first" | "last" if tail.is_empty() => {
                path.data = Some(match name {
                    "index" => DataVar::Index,
                    "key" => DataVar::Key,
                    "first" => DataVar::First,
                    _ => DataVar::Last,
                });
                return Ok(path);
            }
            _ => return Err(bad("is not a variable SES templates know (@index, @key, @first, @last, @root)")),
        }
        if path.up > 0 {
            return Err(bad("mixes ../ and @root"));
        }
        rest = tail;
    } else if rest == "this" || rest == "." {
        rest = "";
    } else if let Some(r) = rest.strip_prefix("this.").or_else(|| rest.strip_prefix("this/")) {
        rest = r;
    } else if let Some(r) = rest.strip_prefix("./") {
        rest = r;
    }
    let mut chars = rest.char_indices().peekable();
    let mut expect_segment = !rest.is_empty();
    while let Some(&(i, c)) = chars.peek() {
        if c == '[' {
            let close = rest[i..].find(']').ok_or_else(|| bad("has an unclosed '['"))?;
            let seg = &rest[i + 1..i + close];
            if seg.is_empty() {
                return Err(bad("has an empty segment"));
            }
            path.segments.push(seg.to_string());
            while chars.peek().is_some_and(|&(j, _)| j <= i + close) {
                chars.next();
            }
        } else {
            let mut end = rest.len();
            while let Some(&(j, c)) = chars.peek() {
                if c == '.' || c == '/' {
                    end = j;
                    break;
                }
                if !is_id_char(c) {
                    return Err(bad(&format!("contains '{c}', which a variable name cannot")));
                }
                chars.next();
            }
            let seg = &rest[i..end];
            if seg.is_empty() || seg == "this" || seg == ".." {
                return Err(bad("is not a valid variable path"));
            }
            path.segments.push(seg.to_string());
        }
        expect_segment = false;
        if let Some(&(_, c)) = chars.peek() {
            if c != '.' && c != '/' {
                return Err(bad("is not a valid variable path"));
            }
            chars.next();
            expect_segment = true;
        }
    }
    if expect_segment {
        return Err(bad("is not a valid variable path"));
    }
    Ok(path)
}

/// Classify the inside of a `{{ … }}` (without the braces or `~`).
fn classify(inner: &str, triple: bool, line: usize) -> Result<Tag, RenderError> {
    let s = inner.trim();
    if triple {
        return single_path(s, line).map(|path| Tag::Value { path, escape: false });
    }
    let Some(first) = s.chars().next() else {
        return Err(invalid(format!("line {line}: an empty {{{{}}}}")));
    };
    match first {
        '!' => Ok(Tag::Comment),
        '>' => Err(invalid(format!("line {line}: partials ({{{{> …}}}}) are not supported; {SUBSET}."))),
        '*' => Err(invalid(format!("line {line}: decorators ({{{{* …}}}}) are not supported; {SUBSET}."))),
        '&' => single_path(s[1..].trim(), line).map(|path| Tag::Value { path, escape: false }),
        '^' if s == "^" => Ok(Tag::Else),
        '^' => Err(invalid(format!("line {line}: inverted sections ({{{{^…}}}}) are not supported; {SUBSET}."))),
        '#' => {
            let body = s[1..].trim_start();
            if body.starts_with('>') {
                return Err(invalid(format!("line {line}: partial blocks are not supported; {SUBSET}.")));
            }
            if body.starts_with('*') {
                return Err(invalid(format!("line {line}: inline partials are not supported; {SUBSET}.")));
            }
            let (kind, arg) = block_head(body, line)?;
            Ok(Tag::Open { kind, arg })
        }
        '/' => {
            let name = s[1..].trim();
            Ok(Tag::Close(name.to_string()))
        }
        _ => {
            let mut words = s.split_whitespace();
            if words.next() == Some("else") {
                let rest: Vec<&str> = words.collect();
                if rest.is_empty() {
                    return Ok(Tag::Else);
                }
                let (kind, arg) = block_head(&rest.join(" "), line)?;
                if kind == BlockKind::Each {
                    return Err(invalid(format!("line {line}: {{{{else each}}}} is not supported; {SUBSET}.")));
                }
                return Ok(Tag::ElseChain { kind, arg });
            }
            single_path(s, line).map(|path| Tag::Value { path, escape: true })
        }
    }
}

/// A tag that must hold one variable path and nothing else.
fn single_path(s: &str, line: usize) -> Result<Path, RenderError> {
    let mut words = s.split_whitespace();
    let Some(first) = words.next() else {
        return Err(invalid(format!("line {line}: an empty {{{{}}}}")));
    };
    if words.next().is_some() || s.contains(['(', '=', '"', '\'']) {
        let name = first.trim_start_matches('(');
        return Err(invalid(format!("line {line}: '{name}' is a helper call, which is not supported; {SUBSET}.")));
    }
    parse_path(first, line)
}

/// `if x`, `unless x`, `each x`: the block and its one argument.
fn block_head(s: &str, line: usize) -> Result<(BlockKind, Path), RenderError> {
    let mut words = s.splitn(2, char::is_whitespace);
    let name = words.next().unwrap_or_default();
    let kind = match name {
        "if" => BlockKind::If,
        "unless" => BlockKind::Unless,
        "each" => BlockKind::Each,
        other => {
            return Err(invalid(format!("line {line}: the block helper '{other}' is not supported; {SUBSET}.")));
        }
    };
    let arg = words.next().unwrap_or_default().trim();
    if arg.is_empty() {
        return Err(invalid(format!("line {line}: {{{{#{name}}}}} needs a variable")));
    }
    if arg.contains(" as |") || arg.contains(" as|") {
        return Err(invalid(format!("line {line}: block parameters (as |…|) are not supported; {SUBSET}.")));
    }
    Ok((kind, single_path(arg, line)?))
}

/// Split a template into text and tags.
fn tokenize(src: &str) -> Result<Vec<Token>, RenderError> {
    let mut tokens = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    let bytes = src.as_bytes();
    let line_at = |pos: usize| src[..pos].bytes().filter(|&b| b == b'\n').count() + 1;
    let flush = |text: &mut String, tokens: &mut Vec<Token>| {
        if !text.is_empty() {
            let orig = std::mem::take(text);
            let end = orig.len();
            tokens.push(Token::Text { orig, start: 0, end });
        }
    };
    while i < bytes.len() {
        let Some(off) = src[i..].find("{{") else {
            text.push_str(&src[i..]);
            break;
        };
        let at = i + off;
        // `\{{` is a literal `{{`: the text runs on to the next `{{` (or to the backslash of the
        // next `\{{`, which the next turn reads as one).
        if at > i && bytes[at - 1] == b'\\' {
            text.push_str(&src[i..at - 1]);
            let mut next = src[at + 2..].find("{{").map(|o| at + 2 + o).unwrap_or(src.len());
            if next < src.len() && bytes[next - 1] == b'\\' {
                next -= 1;
            }
            text.push_str(&src[at..next]);
            i = next;
            continue;
        }
        text.push_str(&src[i..at]);
        let line = line_at(at);
        if src[at..].starts_with("{{{{") {
            return Err(invalid(format!("line {line}: raw blocks ({{{{{{{{ … }}}}}}}}) are not supported; {SUBSET}.")));
        }
        let mut p = at + 2;
        let strip_before = src[p..].starts_with('~');
        if strip_before {
            p += 1;
        }
        let (tag, end, strip_after) = if src[p..].starts_with("!--") {
            let never = || invalid(format!("line {line}: a comment that never ends"));
            let (close, strip_after) = match (src[p + 3..].find("--}}"), src[p + 3..].find("--~}}")) {
                (Some(a), Some(b)) if b < a => (p + 3 + b + 5, true),
                (Some(a), _) => (p + 3 + a + 4, false),
                (None, Some(b)) => (p + 3 + b + 5, true),
                (None, None) => return Err(never()),
            };
            (Tag::Comment, close, strip_after)
        } else if src[p..].starts_with('{') {
            let close =
                src[p..].find("}}}").ok_or_else(|| invalid(format!("line {line}: '{{{{{{' is never closed")))?;
            let mut inner = &src[p + 1..p + close];
            let strip_after = inner.ends_with('~');
            if strip_after {
                inner = &inner[..inner.len() - 1];
            }
            (classify(inner, true, line)?, p + close + 3, strip_after)
        } else {
            let close = src[p..].find("}}").ok_or_else(|| invalid(format!("line {line}: '{{{{' is never closed")))?;
            let mut inner = &src[p..p + close];
            let strip_after = inner.ends_with('~');
            if strip_after {
                inner = &inner[..inner.len() - 1];
            }
            (classify(inner, false, line)?, p + close + 2, strip_after)
        };
        flush(&mut text, &mut tokens);
        tokens.push(Token::Tag { tag, strip_before, strip_after, line });
        i = end;
    }
    flush(&mut text, &mut tokens);
    Ok(tokens)
}

/// Apply `~` and Handlebars' standalone-line rule: a block, else or comment tag alone on its line
/// takes the line's indentation and line break with it.
fn control_whitespace(tokens: &mut [Token]) {
    let n = tokens.len();
    for i in 0..n {
        let (standalone_kind, strip_before, strip_after) = match &tokens[i] {
            Token::Tag { tag, strip_before, strip_after, .. } => {
                (!matches!(tag, Tag::Value { .. }), *strip_before, *strip_after)
            }
            Token::Text { .. } => continue,
        };
        if strip_before && let Some(Token::Text { orig, start, end }) = i.checked_sub(1).map(|j| &mut tokens[j]) {
            *end = *start + orig[*start..*end].trim_end().len();
        }
        if strip_after && let Some(Token::Text { orig, start, end }) = tokens.get_mut(i + 1) {
            *start = *end - orig[*start..*end].trim_start().len();
        }
        if !standalone_kind {
            continue;
        }
        // Judged on the original text, as Handlebars does.
        let left = match i.checked_sub(1).map(|j| &tokens[j]) {
            None => Some(None),
            Some(Token::Text { orig, .. }) => {
                let line_start = orig.rfind('\n').map(|p| p + 1);
                let tail = &orig[line_start.unwrap_or(0)..];
                let blank = tail.chars().all(|c| c == ' ' || c == '\t');
                (blank && (line_start.is_some() || i == 1)).then_some(Some(line_start.unwrap_or(0)))
            }
            Some(Token::Tag { .. }) => None,
        };
        let right = match tokens.get(i + 1) {
            None => Some(None),
            Some(Token::Text { orig, .. }) => match orig.find('\n') {
                Some(p) if orig[..p].chars().all(|c| c == ' ' || c == '\t' || c == '\r') => Some(Some(p + 1)),
                None if i + 2 == n && orig.chars().all(|c| c == ' ' || c == '\t' || c == '\r') => {
                    Some(Some(orig.len()))
                }
                _ => None,
            },
            Some(Token::Tag { .. }) => None,
        };
        if let (Some(l), Some(r)) = (left, right) {
            if let (Some(cut), Some(Token::Text { start, end, .. })) = (l, i.checked_sub(1).map(|j| &mut tokens[j])) {
                *end = (*end).min(cut).max(*start);
            }
            if let (Some(cut), Some(Token::Text { start, end, .. })) = (r, tokens.get_mut(i + 1)) {
                *start = (*start).max(cut).min(*end);
            }
        }
    }
}

/// A block being parsed.
struct Open {
    kind: BlockKind,
    arg: Path,
    then: Vec<Node>,
    otherwise: Vec<Node>,
    in_else: bool,
    /// Opened by `{{else if}}`: closed together with the block it continues.
    chained: bool,
    line: usize,
}

impl Open {
    fn into_node(self) -> Node {
        match self.kind {
            BlockKind::Each => Node::Each { over: self.arg, body: self.then, otherwise: self.otherwise },
            k => {
                Node::If { cond: self.arg, negate: k == BlockKind::Unless, then: self.then, otherwise: self.otherwise }
            }
        }
    }
}

/// Open a block (`chained`: by `{{else if}}`), unless that nests blocks too deep.
fn open(stack: &mut Vec<Open>, kind: BlockKind, arg: Path, chained: bool, line: usize) -> Result<(), RenderError> {
    if stack.len() >= MAX_DEPTH {
        return Err(invalid(format!("line {line}: blocks are nested more than {MAX_DEPTH} deep")));
    }
    stack.push(Open { kind, arg, then: vec![], otherwise: vec![], in_else: false, chained, line });
    Ok(())
}

/// Parse one part of a template.
pub(crate) fn parse(src: &str) -> Result<Vec<Node>, RenderError> {
    let mut tokens = tokenize(src)?;
    control_whitespace(&mut tokens);
    let mut top: Vec<Node> = Vec::new();
    let mut stack: Vec<Open> = Vec::new();
    fn push(stack: &mut [Open], top: &mut Vec<Node>, node: Node) {
        match stack.last_mut() {
            Some(o) if o.in_else => o.otherwise.push(node),
            Some(o) => o.then.push(node),
            None => top.push(node),
        }
    }
    for t in tokens {
        match t {
            Token::Text { orig, start, end } => {
                if start < end {
                    push(&mut stack, &mut top, Node::Text(orig[start..end].to_string()));
                }
            }
            Token::Tag { tag, line, .. } => match tag {
                Tag::Comment => {}
                Tag::Value { path, escape } => push(&mut stack, &mut top, Node::Value { path, escape }),
                Tag::Open { kind, arg } => open(&mut stack, kind, arg, false, line)?,
                Tag::Else | Tag::ElseChain { .. } => {
                    let Some(o) = stack.last_mut() else {
                        return Err(invalid(format!("line {line}: {{{{else}}}} outside a block")));
                    };
                    if o.in_else {
                        return Err(invalid(format!("line {line}: a second {{{{else}}}} in one block")));
                    }
                    o.in_else = true;
                    if let Tag::ElseChain { kind, arg } = tag {
                        open(&mut stack, kind, arg, true, line)?;
                    }
                }
                Tag::Close(name) => {
                    // Close the `{{else if}}` links first, then the block they continue.
                    loop {
                        let Some(o) = stack.pop() else {
                            return Err(invalid(format!("line {line}: {{{{/{name}}}}} closes no open block")));
                        };
                        let chained = o.chained;
                        if !chained && o.kind.name() != name {
                            return Err(invalid(format!(
                                "line {line}: {{{{/{name}}}}} does not match {{{{#{}}}}} of line {}",
                                o.kind.name(),
                                o.line
                            )));
                        }
                        let node = o.into_node();
                        push(&mut stack, &mut top, node);
                        if !chained {
                            break;
                        }
                    }
                }
            },
        }
    }
    if let Some(o) = stack.last() {
        return Err(invalid(format!("line {}: {{{{#{}}}}} is never closed", o.line, o.kind.name())));
    }
    Ok(top)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> String {
        match parse(src) {
            Err(RenderError::InvalidTemplate(m)) => m,
            other => panic!("expected an invalid template, got {other:?}"),
        }
    }

    #[test]
    fn partials_are_refused_by_name() {
        assert!(err("{{> text}}").contains("partials"));
        assert!(err("{{#> layout}}x{{/layout}}").contains("partial blocks"));
        assert!(err("{{#*inline \"a\"}}{{> b}}{{/inline}}").contains("inline partials"));
    }

    #[test]
    fn helpers_outside_the_subset_are_refused() {
        for src in ["{{log \"x\"}}", "{{lookup a b}}", "{{#with a}}x{{/with}}", "{{eq a b}}", "{{len a}}", "{{x (y)}}"]
        {
            assert!(err(src).contains("not supported"), "{src}");
        }
        assert!(err("{{{{raw}}}}x{{{{/raw}}}}").contains("raw blocks"));
        assert!(err("{{*deco}}").contains("decorators"));
    }

    #[test]
    fn nesting_deeper_than_the_limit_is_refused() {
        let ok = "{{#if a}}".repeat(MAX_DEPTH) + &"{{/if}}".repeat(MAX_DEPTH);
        assert!(parse(&ok).is_ok());
        let deep = "{{#if a}}".repeat(2000) + &"{{/if}}".repeat(2000);
        assert!(err(&deep).contains("nested more than"));
    }

    #[test]
    fn else_if_chains_close_with_their_block() {
        let nodes = parse("{{#if a}}A{{else if b}}B{{else}}C{{/if}}").expect("parse");
        let [Node::If { otherwise, .. }] = nodes.as_slice() else { panic!("{nodes:?}") };
        assert!(matches!(otherwise.as_slice(), [Node::If { .. }]));
    }

    #[test]
    fn mismatched_and_unclosed_blocks_are_refused() {
        assert!(err("{{#if a}}x{{/each}}").contains("does not match"));
        assert!(err("{{#if a}}x").contains("never closed"));
        assert!(err("x{{/if}}").contains("closes no open block"));
        assert!(err("{{else}}").contains("outside a block"));
        assert!(err("{{ name").contains("never closed"));
    }

    #[test]
    fn paths_parse_into_their_parts() {
        let p = parse_path("../a.b.[c d]", 1).expect("path");
        assert_eq!((p.up, p.segments), (1, vec!["a".to_string(), "b".into(), "c d".into()]));
        assert_eq!(parse_path("@index", 1).expect("path").data, Some(DataVar::Index));
        assert!(parse_path("@root.x", 1).expect("path").root);
        assert!(parse_path("this", 1).expect("path").segments.is_empty());
        assert!(parse_path("a..b", 1).is_err());
        assert!(parse_path("a.", 1).is_err());
        assert!(parse_path("@foo", 1).is_err());
    }

    #[test]
    fn standalone_block_lines_leave_no_blank_lines() {
        let nodes = parse("a\n{{#if x}}\nb\n{{/if}}\nc").expect("parse");
        assert_eq!(
            nodes,
            vec![
                Node::Text("a\n".into()),
                Node::If {
                    cond: parse_path("x", 1).expect("path"),
                    negate: false,
                    then: vec![Node::Text("b\n".into())],
                    otherwise: vec![]
                },
                Node::Text("c".into()),
            ]
        );
    }

    #[test]
    fn tilde_trims_the_neighbouring_whitespace() {
        let nodes = parse("a  {{~x~}}  b").expect("parse");
        assert!(matches!(nodes.as_slice(), [Node::Text(a), Node::Value { .. }, Node::Text(b)] if a == "a" && b == "b"));
    }

    #[test]
    fn escaped_mustaches_are_text() {
        assert_eq!(parse("\\{{x}} y").expect("parse"), vec![Node::Text("{{x}} y".into())]);
        assert_eq!(parse("\\{{a}}\\{{b}}").expect("parse"), vec![Node::Text("{{a}}{{b}}".into())]);
    }
}
