//! Extraction rules for TypeScript, TSX and JavaScript: one table shared by the three grammars
//! (a kind a grammar lacks simply never matches).
//!
//! Export forms handled: `export` on a declaration, `export default` (a named declaration, an
//! anonymous function or class named `default`, or a local name), `export =`, `export { a, b as
//! c }`, and CommonJS `module.exports = X | { a, b: c, d() {} }`, `exports.x = ..` and
//! `module.exports.x = ..`. Names exported by a separate statement are resolved against
//! module-level symbols at the end of the walk. Members of an exported class are exported; a
//! namespace member is exported when the namespace is and the member says `export` (or the
//! namespace is ambient, where every member is visible), as TypeScript has it.

use tree_sitter::Node;

use crate::extract::{
    Decl, Descend, Handler, Import, ImportKind, ImportedName, Keep, LandmarkSpec, Pos, SymbolKind, Visit,
    Walker,
};
use crate::lang::NodeExt;

/// What can introduce a symbol or an import inside a function body.
pub(crate) const LANDMARKS: LandmarkSpec = LandmarkSpec {
    words: &[
        "function",
        "class",
        "require",
        "import",
        "exports",
        "module",
        "interface",
        "type",
        "enum",
        "namespace",
    ],
    module_words: &["const", "let", "var", "export", "declare", "abstract", "global"],
    punctuation: &["=>"],
    // `export` only through error recovery: it is a module-level statement.
    local_words: &["require", "import", "exports", "module", "export"],
};

/// Node kind → handler.
pub(crate) const RULES: &[(&str, Handler)] = &[
    ("function_declaration", function_declaration),
    ("generator_function_declaration", function_declaration),
    ("function_signature", function_declaration),
    ("class_declaration", class_declaration),
    ("abstract_class_declaration", class_declaration),
    ("interface_declaration", interface_declaration),
    ("type_alias_declaration", type_alias_declaration),
    ("enum_declaration", enum_declaration),
    ("internal_module", namespace),
    ("module", namespace),
    ("ambient_declaration", ambient_declaration),
    ("variable_declarator", variable_declarator),
    ("method_definition", class_method),
    ("method_signature", class_method),
    ("abstract_method_signature", class_method),
    ("public_field_definition", class_field),
    ("field_definition", class_field),
    ("decorator", decorator),
    ("arrow_function", anonymous_function),
    ("function_expression", anonymous_function),
    ("function", anonymous_function),
    ("generator_function", anonymous_function),
    ("class", anonymous_function),
    ("export_statement", export_statement),
    ("import_statement", import_statement),
    ("call_expression", call_expression),
    ("assignment_expression", assignment_expression),
    // Subtrees that hold nothing to extract: skipping them saves visiting type-heavy code.
    ("comment", skip),
    ("string", skip),
    ("regex", skip),
    ("type_annotation", skip),
    ("type_arguments", skip),
    ("type_parameters", skip),
    ("interface_body", skip),
];

fn skip(_: &mut Walker<'_, '_>, _: &Visit<'_>) -> Descend {
    Descend::No
}

/// Function-valued expressions: what a name can be bound to.
fn is_function_value(kind: &str) -> bool {
    matches!(kind, "arrow_function" | "function_expression" | "function" | "generator_function")
}

/// Wrappers a declaration can sit in, which its range and export flag take into account.
struct Wrapped<'t> {
    /// The outermost node of the declaration.
    outer: Node<'t>,
    exported: bool,
    ambient: bool,
}

/// Climbs from `node` (at `depth`) through `export`, `declare` and statement wrappers.
fn wrapped<'t>(w: &Walker<'_, 't>, visit: &Visit<'_>, node: Node<'t>, depth: usize) -> Wrapped<'t> {
    let mut out = Wrapped { outer: node, exported: false, ambient: false };
    let mut d = depth;
    while d > 0 {
        let Some(parent) = w.ancestor(visit, visit.depth - d + 1) else { break };
        match parent.kind_name() {
            "export_statement" => out.exported = true,
            "ambient_declaration" => out.ambient = true,
            // `namespace A {}` parses as an expression statement.
            "expression_statement" if out.outer.kind_name() == "internal_module" => {}
            _ => break,
        }
        out.outer = parent;
        d -= 1;
    }
    out
}

/// Where the signature starts: the first child that is not a decorator or comment.
fn signature_start(node: &Node<'_>) -> usize {
    let mut cursor = node.walk();
    if cursor.goto_first_child() {
        loop {
            let child = cursor.node();
            if !matches!(child.kind_name(), "decorator" | "comment") {
                return child.start_byte();
            }
            if !cursor.goto_next_sibling() {
                break;
            }
        }
    }
    node.start_byte()
}

/// A declaration spanning `outer`.
fn decl(name: String, kind: SymbolKind, outer: &Node<'_>) -> Decl {
    Decl {
        name,
        kind,
        start: Pos::start(outer),
        end: Pos::end(outer),
        sig_start: signature_start(outer),
        explicit_export: false,
        ambient: false,
        keep: Keep::Always,
        opens_scope: matches!(
            kind,
            SymbolKind::Function
                | SymbolKind::Class
                | SymbolKind::Method
                | SymbolKind::Constructor
                | SymbolKind::Getter
                | SymbolKind::Setter
                | SymbolKind::Namespace
        ),
    }
}

/// A declaration named by its `name` field, wrappers included.
fn named_declaration(w: &mut Walker<'_, '_>, visit: &Visit<'_>, kind: SymbolKind) -> Option<usize> {
    let node = visit.node;
    let name = node.field("name").map(|n| w.node_text(&n).to_owned())?;
    let wrap = wrapped(w, visit, node, visit.depth);
    let mut d = decl(name, kind, &wrap.outer);
    d.explicit_export = wrap.exported;
    d.ambient = wrap.ambient;
    d.opens_scope &= node.field("body").is_some();
    if node.kind_name() == "function_signature" {
        d.keep = Keep::UnlessImplemented;
    }
    w.emit(visit, d)
}

fn function_declaration(w: &mut Walker<'_, '_>, visit: &Visit<'_>) -> Descend {
    if named_declaration(w, visit, SymbolKind::Function).is_none() {
        w.opaque(visit);
    }
    Descend::Yes
}

fn class_declaration(w: &mut Walker<'_, '_>, visit: &Visit<'_>) -> Descend {
    if named_declaration(w, visit, SymbolKind::Class).is_none() {
        w.opaque(visit);
    }
    Descend::Yes
}

fn interface_declaration(w: &mut Walker<'_, '_>, visit: &Visit<'_>) -> Descend {
    named_declaration(w, visit, SymbolKind::Interface);
    Descend::No
}

fn type_alias_declaration(w: &mut Walker<'_, '_>, visit: &Visit<'_>) -> Descend {
    named_declaration(w, visit, SymbolKind::TypeAlias);
    Descend::No
}

fn enum_declaration(w: &mut Walker<'_, '_>, visit: &Visit<'_>) -> Descend {
    named_declaration(w, visit, SymbolKind::Enum);
    Descend::Yes
}

/// `namespace A.B {}`, `module M {}`, `declare module "pkg" {}`.
fn namespace(w: &mut Walker<'_, '_>, visit: &Visit<'_>) -> Descend {
    let node = visit.node;
    let Some(name_node) = node.field("name") else { return Descend::Yes };
    let raw = w.node_text(&name_node);
    let is_string = name_node.kind_name() == "string";
    let name = if is_string { unquote(raw) } else { raw };
    let wrap = wrapped(w, visit, node, visit.depth);
    let mut d = decl(name.to_owned(), SymbolKind::Namespace, &wrap.outer);
    // `declare module "pkg"` declares what another module exports.
    d.explicit_export = wrap.exported || is_string;
    d.ambient = wrap.ambient || w.in_ambient();
    if w.emit(visit, d).is_none() {
        w.opaque(visit);
    }
    Descend::Yes
}

/// `declare global { .. }`; other ambient declarations are handled at the declaration inside.
fn ambient_declaration(w: &mut Walker<'_, '_>, visit: &Visit<'_>) -> Descend {
    let node = visit.node;
    let is_global = (0..node.child_count()).filter_map(|i| node.child(i)).any(|c| c.kind_name() == "global");
    if is_global {
        let mut d = decl("global".to_owned(), SymbolKind::Namespace, &node);
        d.explicit_export = true;
        d.ambient = true;
        if w.emit(visit, d).is_none() {
            w.opaque(visit);
        }
    }
    Descend::Yes
}

/// `const f = () => ..`, `let x = 1`, `export const { a, b } = ..`.
fn variable_declarator<'t>(w: &mut Walker<'_, 't>, visit: &Visit<'t>) -> Descend {
    let node = visit.node;
    let Some(declaration) = w.ancestor(visit, 1) else { return Descend::Yes };
    // `for (let i = 0; ..)` declares a loop variable, not a symbol.
    if w.ancestor(visit, 2).is_some_and(|p| p.kind_name() == "for_statement") {
        return Descend::Yes;
    }
    let Some(name_node) = node.field("name") else { return Descend::Yes };
    let value = node.field("value");
    let is_const = declaration.field("kind").is_some_and(|k| k.kind_name() == "const");

    // A lone declarator owns its whole statement; one of several owns only itself.
    let single = declaration
        .named_children(&mut declaration.walk())
        .filter(|c| c.kind_name() == "variable_declarator")
        .count()
        == 1;
    let wrap = wrapped(w, visit, declaration, visit.depth - 1);
    let (outer, exported, ambient) = (if single { wrap.outer } else { node }, wrap.exported, wrap.ambient);

    if name_node.kind_name() == "identifier" {
        let name = w.node_text(&name_node).to_owned();
        if let Some((target, kind)) = value.and_then(|v| bound_value(w, v)) {
            let mut d = decl(name, kind, &outer);
            d.explicit_export = exported;
            d.ambient = ambient;
            w.bind(&target, d);
            return Descend::Yes;
        }
        if !w.at_module_scope() {
            return Descend::Yes;
        }
        let kind = if is_const { SymbolKind::Constant } else { SymbolKind::Variable };
        let mut d = decl(name, kind, &outer);
        d.explicit_export = exported;
        d.ambient = ambient;
        let imported = value.is_some_and(|v| is_module_load(w, &v));
        if !is_const || imported {
            d.keep = Keep::IfExported;
        }
        w.emit(visit, d);
    } else if exported && w.at_module_scope() {
        // Destructuring exports one symbol per bound name, each spanning its own element so
        // sibling ranges never overlap.
        let kind = if is_const { SymbolKind::Constant } else { SymbolKind::Variable };
        for element in pattern_names(&name_node) {
            let mut d = decl(w.node_text(&element).to_owned(), kind, &element);
            d.explicit_export = true;
            d.ambient = ambient;
            w.emit(visit, d);
        }
    }
    Descend::Yes
}

/// The node a name bound to `value` should be emitted at, and its kind: a function or class
/// expression, or one wrapped in `memo(..)` / `forwardRef(..)` (React components), however
/// deeply (a loop, not recursion: the wrapping comes from the input).
fn bound_value<'t>(w: &Walker<'_, 't>, value: Node<'t>) -> Option<(Node<'t>, SymbolKind)> {
    let mut value = value;
    loop {
        match value.kind_name() {
            kind if is_function_value(kind) => return Some((value, SymbolKind::Function)),
            "class" => return Some((value, SymbolKind::Class)),
            "call_expression" => {
                let callee = w.node_text(&value.field("function")?);
                if !matches!(callee, "memo" | "forwardRef" | "React.memo" | "React.forwardRef") {
                    return None;
                }
                value = value.field("arguments")?.named_child(0)?;
            }
            _ => return None,
        }
    }
}

/// `require("x")`, `import("x")` or `await import("x")`: a module, not a value worth a symbol.
fn is_module_load(w: &Walker<'_, '_>, value: &Node<'_>) -> bool {
    let value = if value.kind_name() == "await_expression" {
        match value.named_child(0) {
            Some(inner) => inner,
            None => return false,
        }
    } else {
        *value
    };
    if value.kind_name() != "call_expression" {
        return false;
    }
    value.field("function").is_some_and(|f| f.kind_name() == "import" || w.node_text(&f) == "require")
}

/// The identifiers a destructuring pattern binds, one level deep.
fn pattern_names<'t>(pattern: &Node<'t>) -> Vec<Node<'t>> {
    let mut cursor = pattern.walk();
    pattern
        .named_children(&mut cursor)
        .filter_map(|child| match child.kind_name() {
            "shorthand_property_identifier_pattern" | "identifier" => Some(child),
            "pair_pattern" => child.field("value").filter(|v| v.kind_name() == "identifier"),
            "object_assignment_pattern" | "assignment_pattern" => {
                child.field("left").filter(|v| v.kind_name().contains("identifier"))
            }
            _ => None,
        })
        .collect()
}

/// A class member's name; quoted names (`"on-click"() {}`) lose their quotes.
fn member_name(w: &Walker<'_, '_>, name: &Node<'_>) -> String {
    let text = w.node_text(name);
    if name.kind_name() == "string" { unquote(text) } else { text }.to_owned()
}

/// Whether the visited class member sits in a class that is a symbol: `class_body` is the
/// parent and the class the innermost scope.
fn in_class_symbol(w: &Walker<'_, '_>, visit: &Visit<'_>) -> bool {
    w.ancestor(visit, 1).is_some_and(|p| p.kind_name() == "class_body")
        && w.scope_symbol().is_some_and(|(kind, depth)| kind == SymbolKind::Class && depth + 2 == visit.depth)
}

/// The member's range start: TypeScript puts a member's decorators before it as siblings.
fn member_start(visit: &Visit<'_>) -> Pos {
    visit.lead.unwrap_or_else(|| Pos::start(&visit.node))
}

/// Methods, constructors, accessors, and method signatures (overloads, abstract methods).
fn class_method(w: &mut Walker<'_, '_>, visit: &Visit<'_>) -> Descend {
    let node = visit.node;
    let has_body = node.field("body").is_some();
    let emitted = in_class_symbol(w, visit)
        && node.field("name").is_some_and(|name_node| {
            let name = member_name(w, &name_node);
            let mut kind = SymbolKind::Method;
            // Modifiers come before the name: `static async get x()`.
            let mut cursor = node.walk();
            if cursor.goto_first_child() {
                loop {
                    let child = cursor.node();
                    if child.id() == name_node.id() {
                        break;
                    }
                    match child.kind_name() {
                        "get" => kind = SymbolKind::Getter,
                        "set" => kind = SymbolKind::Setter,
                        _ => {}
                    }
                    if !cursor.goto_next_sibling() {
                        break;
                    }
                }
            }
            // Also a `constructor(..)` signature in a declared class or an overload.
            if name == "constructor" {
                kind = SymbolKind::Constructor;
            }
            let mut d = decl(name, kind, &node);
            d.start = member_start(visit);
            d.opens_scope = has_body;
            if node.kind_name() == "method_signature" {
                d.keep = Keep::UnlessImplemented;
            }
            w.emit(visit, d).is_some()
        });
    if !emitted && has_body {
        w.opaque(visit);
    }
    Descend::Yes
}

/// Class fields: a property, or a method when its value is a function (`onClick = () => ..`).
fn class_field(w: &mut Walker<'_, '_>, visit: &Visit<'_>) -> Descend {
    if !in_class_symbol(w, visit) {
        return Descend::Yes;
    }
    let node = visit.node;
    let Some(name_node) = node.field("name").or_else(|| node.field("property")) else {
        return Descend::Yes;
    };
    let name = member_name(w, &name_node);
    let value = node.field("value");
    match value.filter(|v| is_function_value(v.kind_name())) {
        Some(function) => {
            let mut d = decl(name, SymbolKind::Method, &node);
            d.start = member_start(visit);
            w.bind(&function, d);
        }
        None => {
            let mut d = decl(name, SymbolKind::Property, &node);
            d.start = member_start(visit);
            w.emit(visit, d);
        }
    }
    Descend::Yes
}

/// TypeScript class bodies hold member decorators as siblings before the member.
fn decorator(w: &mut Walker<'_, '_>, visit: &Visit<'_>) -> Descend {
    if w.ancestor(visit, 1).is_some_and(|p| p.kind_name() == "class_body") {
        w.lead(visit);
    }
    Descend::Yes
}

/// A function or class expression nobody bound to a name. An immediately invoked function is
/// transparent (module wrappers); any other is a local scope whose declarations are not symbols.
fn anonymous_function(w: &mut Walker<'_, '_>, visit: &Visit<'_>) -> Descend {
    let parent = w.ancestor(visit, 1);
    let iife = match parent.map(|p| p.kind_name()) {
        Some("call_expression") => visit.field == Some("function"),
        Some("parenthesized_expression") => w
            .ancestor(visit, 2)
            .is_some_and(|g| g.kind_name() == "call_expression" || g.kind_name() == "unary_expression"),
        Some("unary_expression") => true,
        _ => false,
    };
    if !iife || visit.node.kind_name() == "class" {
        w.opaque(visit);
    }
    Descend::Yes
}

fn export_statement<'t>(w: &mut Walker<'_, 't>, visit: &Visit<'t>) -> Descend {
    let node = visit.node;
    let line = node.start_position().row as u32 + 1;
    if let Some(source) = node.field("source") {
        let mut names = Vec::new();
        let mut cursor = node.walk();
        for child in node.children(&mut cursor) {
            match child.kind_name() {
                "export_clause" => names.extend(specifiers(w, &child, "export_specifier").map(|(n, _)| n)),
                "namespace_export" => names.push(ImportedName {
                    name: "*".to_owned(),
                    alias: child.named_child(0).map(|a| unquote(w.node_text(&a)).to_owned()),
                }),
                "*" => names.push(ImportedName { name: "*".to_owned(), alias: None }),
                _ => {}
            }
        }
        w.import(Import {
            specifier: unquote(w.node_text(&source)).to_owned(),
            kind: ImportKind::ReExport,
            names,
            line,
        });
        return Descend::No;
    }

    let mut cursor = node.walk();
    let mut after_equals = false;
    let mut is_default = false;
    for child in node.children(&mut cursor) {
        match child.kind_name() {
            "export_clause" => {
                for (name, _) in specifiers(w, &child, "export_specifier").collect::<Vec<_>>() {
                    w.mark_exported(&name.name);
                }
                return Descend::No;
            }
            "default" => is_default = true,
            "=" => after_equals = true,
            _ if after_equals && child.is_named() => {
                // `export = X`
                exported_expression(w, &child, &node);
                return Descend::Yes;
            }
            _ => {}
        }
    }
    if is_default && let Some(value) = node.field("value") {
        exported_expression(w, &value, &node);
    }
    Descend::Yes
}

/// Something a module exports as a whole (`export default X`, `export = X`,
/// `module.exports = X`): a local name, an object of names, or a function or class expression.
fn exported_expression<'t>(w: &mut Walker<'_, 't>, value: &Node<'t>, statement: &Node<'t>) {
    match value.kind_name() {
        "identifier" => w.mark_exported(w.node_text(value)),
        "object" => {
            let mut cursor = value.walk();
            for entry in value.named_children(&mut cursor) {
                match entry.kind_name() {
                    "shorthand_property_identifier" => w.mark_exported(w.node_text(&entry)),
                    "pair" => {
                        let (Some(key), Some(v)) = (entry.field("key"), entry.field("value")) else {
                            continue;
                        };
                        let key = unquote(w.node_text(&key)).to_owned();
                        if v.kind_name() == "identifier" {
                            w.mark_exported(w.node_text(&v));
                        } else if let Some((target, kind)) = bound_value(w, v) {
                            let mut d = decl(key, kind, &entry);
                            d.explicit_export = true;
                            w.bind(&target, d);
                        }
                    }
                    "method_definition" => {
                        if let Some(name) = entry.field("name") {
                            let mut d = decl(w.node_text(&name).to_owned(), SymbolKind::Function, &entry);
                            d.explicit_export = true;
                            w.bind(&entry, d);
                        }
                    }
                    _ => {}
                }
            }
        }
        kind if is_function_value(kind) || kind == "class" => {
            // Named expressions keep their name; anonymous ones are the module's `default`.
            let name = value
                .field("name")
                .map(|n| w.node_text(&n).to_owned())
                .unwrap_or_else(|| "default".to_owned());
            let kind = if kind == "class" { SymbolKind::Class } else { SymbolKind::Function };
            let mut d = decl(name, kind, statement);
            d.explicit_export = true;
            w.bind(value, d);
        }
        _ => {}
    }
}

/// `(name, alias)` of each specifier of kind `kind` in an import or export clause, and whether
/// it is marked `type`.
fn specifiers<'a, 't>(
    w: &'a Walker<'_, 't>,
    clause: &Node<'t>,
    kind: &'static str,
) -> impl Iterator<Item = (ImportedName, bool)> + 'a {
    let mut cursor = clause.walk();
    let children: Vec<Node<'t>> =
        clause.named_children(&mut cursor).filter(|c| c.kind_name() == kind).collect();
    children.into_iter().filter_map(move |spec| {
        let name = spec.field("name")?;
        let alias = spec.field("alias").map(|a| unquote(w.node_text(&a)).to_owned());
        let is_type = (0..spec.child_count()).filter_map(|i| spec.child(i)).any(|c| c.kind_name() == "type");
        Some((ImportedName { name: unquote(w.node_text(&name)).to_owned(), alias }, is_type))
    })
}

fn import_statement(w: &mut Walker<'_, '_>, visit: &Visit<'_>) -> Descend {
    let node = visit.node;
    let line = node.start_position().row as u32 + 1;
    let mut names = Vec::new();
    let mut type_keyword = false;
    let mut has_clause = false;
    // Named specifiers all marked `type` (`import { type A, type B }`) import only types.
    let mut named_all_types = true;
    let mut unnamed_bindings = false;
    let mut source = node.field("source");
    let mut kind = None;
    let mut cursor = node.walk();
    for child in node.children(&mut cursor) {
        match child.kind_name() {
            "type" => type_keyword = true,
            "import_require_clause" => {
                // `import x = require("x")`
                source = child.field("source");
                kind = Some(ImportKind::Require);
                if let Some(local) = child.named_child(0).filter(|c| c.kind_name() == "identifier") {
                    names.push(ImportedName {
                        name: "*".to_owned(),
                        alias: Some(w.node_text(&local).to_owned()),
                    });
                }
            }
            "import_clause" => {
                has_clause = true;
                let mut inner = child.walk();
                for part in child.named_children(&mut inner) {
                    match part.kind_name() {
                        "identifier" => {
                            unnamed_bindings = true;
                            names.push(ImportedName {
                                name: "default".to_owned(),
                                alias: Some(w.node_text(&part).to_owned()),
                            });
                        }
                        "namespace_import" => {
                            unnamed_bindings = true;
                            names.push(ImportedName {
                                name: "*".to_owned(),
                                alias: part.named_child(0).map(|a| w.node_text(&a).to_owned()),
                            });
                        }
                        "named_imports" => {
                            let specs: Vec<_> = specifiers(w, &part, "import_specifier").collect();
                            named_all_types &= !specs.is_empty() && specs.iter().all(|(_, t)| *t);
                            names.extend(specs.into_iter().map(|(n, _)| n));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    let Some(source) = source else { return Descend::No };
    let kind = kind.unwrap_or(if type_keyword || (has_clause && !unnamed_bindings && named_all_types) {
        ImportKind::TypeOnly
    } else if has_clause {
        ImportKind::Static
    } else {
        ImportKind::SideEffect
    });
    w.import(Import { specifier: unquote(w.node_text(&source)).to_owned(), kind, names, line });
    Descend::No
}

/// `require("x")` and `import("x")` anywhere, with a string literal specifier.
fn call_expression<'t>(w: &mut Walker<'_, 't>, visit: &Visit<'t>) -> Descend {
    let node = visit.node;
    let Some(function) = node.field("function") else { return Descend::Yes };
    let kind = match function.kind_name() {
        "import" => ImportKind::Dynamic,
        "identifier" if w.node_text(&function) == "require" => ImportKind::Require,
        _ => return Descend::Yes,
    };
    let Some(args) = node.field("arguments") else { return Descend::Yes };
    // Computed specifiers (`import(`./${x}`)`, `require(name)`) name no file.
    let Some(arg) = args.named_child(0).filter(|a| a.kind_name() == "string") else { return Descend::Yes };
    let mut names = Vec::new();
    if kind == ImportKind::Require
        && visit.field == Some("value")
        && let Some(declarator) = w.ancestor(visit, 1).filter(|p| p.kind_name() == "variable_declarator")
        && let Some(pattern) = declarator.field("name")
    {
        names = required_names(w, &pattern);
    }
    w.import(Import {
        specifier: unquote(w.node_text(&arg)).to_owned(),
        kind,
        names,
        line: node.start_position().row as u32 + 1,
    });
    Descend::Yes
}

/// What `const <pattern> = require("x")` binds: the whole module (`*`) or destructured names.
fn required_names(w: &Walker<'_, '_>, pattern: &Node<'_>) -> Vec<ImportedName> {
    match pattern.kind_name() {
        "identifier" => {
            vec![ImportedName { name: "*".to_owned(), alias: Some(w.node_text(pattern).to_owned()) }]
        }
        "object_pattern" => {
            let mut cursor = pattern.walk();
            pattern
                .named_children(&mut cursor)
                .filter_map(|child| match child.kind_name() {
                    "shorthand_property_identifier_pattern" => {
                        Some(ImportedName { name: w.node_text(&child).to_owned(), alias: None })
                    }
                    "pair_pattern" => {
                        let key = child.field("key")?;
                        let value = child.field("value")?;
                        Some(ImportedName {
                            name: unquote(w.node_text(&key)).to_owned(),
                            alias: Some(w.node_text(&value).to_owned()),
                        })
                    }
                    _ => None,
                })
                .collect()
        }
        _ => Vec::new(),
    }
}

/// CommonJS exports: `module.exports = ..`, `exports.x = ..`, `module.exports.x = ..`.
fn assignment_expression<'t>(w: &mut Walker<'_, 't>, visit: &Visit<'t>) -> Descend {
    let node = visit.node;
    let (Some(left), Some(right)) = (node.field("left"), node.field("right")) else {
        return Descend::Yes;
    };
    if left.kind_name() != "member_expression" {
        return Descend::Yes;
    }
    let (Some(object), Some(property)) = (left.field("object"), left.field("property")) else {
        return Descend::Yes;
    };
    let statement = match w.ancestor(visit, 1) {
        Some(p) if p.kind_name() == "expression_statement" => p,
        _ => node,
    };
    if w.node_text(&left) == "module.exports" {
        exported_expression(w, &right, &statement);
        return Descend::Yes;
    }
    let object_text = w.node_text(&object);
    if object_text != "exports" && object_text != "module.exports" {
        return Descend::Yes;
    }
    let name = w.node_text(&property).to_owned();
    if right.kind_name() == "identifier" {
        w.mark_exported(w.node_text(&right));
    } else if let Some((target, kind)) = bound_value(w, right) {
        let mut d = decl(name, kind, &statement);
        d.explicit_export = true;
        w.bind(&target, d);
    } else if !is_module_load(w, &right) && w.at_module_scope() {
        let mut d = decl(name, SymbolKind::Variable, &statement);
        d.explicit_export = true;
        w.emit(visit, d);
    }
    Descend::Yes
}

/// The contents of a string literal's quotes.
fn unquote(text: &str) -> &str {
    let bytes = text.as_bytes();
    if bytes.len() >= 2 && matches!(bytes[0], b'"' | b'\'' | b'`') && bytes[bytes.len() - 1] == bytes[0] {
        &text[1..text.len() - 1]
    } else {
        text
    }
}
