//! The JSON view of a syntax tree (`kiln parse --json`); README documents it.

use super::source::Source;
use super::syntax::{Ast, Node};
use serde_json::{Map, Value, json};

/// `{"directives": {name: value}, "instructions": [...]}` for a whole file.
pub fn to_json(ast: &Ast, source: &Source) -> Value {
    let directives: Map<String, Value> = ast
        .directives
        .iter()
        .map(|d| (d.name.clone(), Value::String(d.value.clone())))
        .collect();
    let instructions: Vec<Value> = ast.nodes.iter().map(|n| node(n, source)).collect();
    json!({ "directives": directives, "instructions": instructions })
}

fn node(n: &Node, source: &Source) -> Value {
    let start = source.position(n.keyword_span.start);
    let mut v = json!({
        "name": n.keyword.to_uppercase(),
        "keyword": n.keyword,
        "line": start.line,
        "column": start.column,
        "end_line": n.end_line.max(start.line),
        "flags": n.flags.iter().map(|f| f.text.clone()).collect::<Vec<_>>(),
        "args": n.args,
        "json": n.json,
        "heredocs": n.heredocs,
        "original": n.original,
    });
    if let (Some(child), Value::Object(map)) = (&n.child, &mut v) {
        map.insert("onbuild".into(), node(child, source));
    }
    v
}
