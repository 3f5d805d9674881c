//! Tera has no recursion limit: a macro that calls itself, or a template that
//! includes itself, overflows the stack and aborts the process (no error, no
//! position). Every Tera hardroot renders is checked for such cycles first, so
//! a module template or a templated profile value fails with a message instead.
use std::collections::BTreeMap;
use tera::ast::{Expr, ExprVal, Node};

/// "a.tera::f → a.tera::g → a.tera::f" when templates, includes and macros call each other in a circle.
pub fn find_cycle(tera: &tera::Tera) -> Option<String> {
    let graph = call_graph(tera);
    let mut state: BTreeMap<&str, bool> = BTreeMap::new(); // false: on the path, true: done
    let mut path: Vec<&str> = Vec::new();
    graph
        .keys()
        .find_map(|start| visit(start, &graph, &mut state, &mut path))
}

fn visit<'a>(
    node: &'a str,
    graph: &'a BTreeMap<String, Vec<String>>,
    state: &mut BTreeMap<&'a str, bool>,
    path: &mut Vec<&'a str>,
) -> Option<String> {
    match state.get(node) {
        Some(true) => return None,
        Some(false) => {
            let from = path.iter().position(|n| *n == node).unwrap_or(0);
            let mut cycle: Vec<&str> = path.iter().skip(from).copied().collect();
            cycle.push(node);
            return Some(cycle.join(" → "));
        }
        None => {}
    }
    state.insert(node, false);
    path.push(node);
    for next in graph.get(node).into_iter().flatten() {
        if let Some(cycle) = visit(next, graph, state, path) {
            return Some(cycle);
        }
    }
    path.pop();
    state.insert(node, true);
    None
}

/// Nodes: "<template>" for a template's body, "<template>::<macro>" for a macro.
fn call_graph(tera: &tera::Tera) -> BTreeMap<String, Vec<String>> {
    let mut graph = BTreeMap::new();
    for (name, tpl) in &tera.templates {
        let imports: BTreeMap<&str, &str> = tpl
            .imported_macro_files
            .iter()
            .map(|(file, ns)| (ns.as_str(), file.as_str()))
            .collect();
        let ctx = Ctx {
            template: name,
            imports: &imports,
        };
        let mut calls = Vec::new();
        ctx.nodes(&tpl.ast, &mut calls);
        graph.insert(name.clone(), calls);
        for (mname, m) in &tpl.macros {
            let mut calls = Vec::new();
            ctx.nodes(&m.body, &mut calls);
            graph.insert(format!("{name}::{mname}"), calls);
        }
    }
    graph
}

struct Ctx<'a> {
    template: &'a str,
    imports: &'a BTreeMap<&'a str, &'a str>,
}

impl Ctx<'_> {
    fn nodes(&self, nodes: &[Node], out: &mut Vec<String>) {
        for n in nodes {
            self.node(n, out);
        }
    }

    fn node(&self, n: &Node, out: &mut Vec<String>) {
        match n {
            Node::VariableBlock(_, e) => self.expr(e, out),
            Node::Include(_, names, _) => out.extend(names.iter().cloned()),
            Node::Set(_, s) => self.expr(&s.value, out),
            Node::FilterSection(_, f, _) => {
                f.filter.args.values().for_each(|a| self.expr(a, out));
                self.nodes(&f.body, out);
            }
            Node::Block(_, b, _) => self.nodes(&b.body, out),
            Node::Forloop(_, f, _) => {
                self.expr(&f.container, out);
                self.nodes(&f.body, out);
                if let Some(empty) = &f.empty_body {
                    self.nodes(empty, out);
                }
            }
            Node::If(i, _) => {
                for (_, e, body) in &i.conditions {
                    self.expr(e, out);
                    self.nodes(body, out);
                }
                if let Some((_, body)) = &i.otherwise {
                    self.nodes(body, out);
                }
            }
            _ => {}
        }
    }

    fn expr(&self, e: &Expr, out: &mut Vec<String>) {
        self.val(&e.val, out);
        for f in &e.filters {
            f.args.values().for_each(|a| self.expr(a, out));
        }
    }

    fn val(&self, v: &ExprVal, out: &mut Vec<String>) {
        match v {
            ExprVal::MacroCall(c) => {
                let file = if c.namespace == "self" {
                    Some(self.template)
                } else {
                    self.imports.get(c.namespace.as_str()).copied()
                };
                if let Some(file) = file {
                    out.push(format!("{file}::{}", c.name));
                }
                c.args.values().for_each(|a| self.expr(a, out));
            }
            ExprVal::FunctionCall(f) => f.args.values().for_each(|a| self.expr(a, out)),
            ExprVal::Math(x) => {
                self.expr(&x.lhs, out);
                self.expr(&x.rhs, out);
            }
            ExprVal::Logic(x) => {
                self.expr(&x.lhs, out);
                self.expr(&x.rhs, out);
            }
            ExprVal::In(x) => {
                self.expr(&x.lhs, out);
                self.expr(&x.rhs, out);
            }
            ExprVal::Test(t) => t.args.iter().for_each(|a| self.expr(a, out)),
            ExprVal::Array(items) => items.iter().for_each(|a| self.expr(a, out)),
            ExprVal::StringConcat(s) => s.values.iter().for_each(|v| self.val(v, out)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::find_cycle;

    fn tera(templates: &[(&str, &str)]) -> tera::Tera {
        let mut t = tera::Tera::default();
        t.add_raw_templates(templates.to_vec()).unwrap();
        t
    }

    #[test]
    fn finds_self_calling_macros_and_self_including_templates() {
        let t = tera(&[(
            "a",
            "{% macro f(n) %}{{ self::f(n=n+1) }}{% endmacro f %}{{ self::f(n=0) }}",
        )]);
        assert_eq!(find_cycle(&t).as_deref(), Some("a::f → a::f"));
        let t = tera(&[("a", "x{% include \"b\" %}"), ("b", "{% include \"a\" %}")]);
        assert!(find_cycle(&t).is_some_and(|c| c.contains("a → b → a")));
        let t = tera(&[
            (
                "m",
                "{% macro g() %}{{ self::h() }}{% endmacro g %}{% macro h() %}{% if true %}{{ self::g() }}{% endif %}{% endmacro h %}",
            ),
            ("a", "{% import \"m\" as m %}{{ m::g() }}"),
        ]);
        assert!(find_cycle(&t).is_some());
    }

    #[test]
    fn ordinary_macros_and_includes_pass() {
        let t = tera(&[
            ("m", "{% macro g(x) %}[{{ x }}]{% endmacro g %}"),
            ("b", "inner"),
            (
                "a",
                "{% import \"m\" as m %}{{ m::g(x=1) }}{% include \"b\" %}",
            ),
        ]);
        assert_eq!(find_cycle(&t), None);
    }
}
