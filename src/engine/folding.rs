//! Starlark folds constant expressions while compiling, with no limit and no
//! deadline: `"a" * 2000000000` builds a 2 GB string before the first
//! request (measured: 200 s in a debug build). This walks the syntax tree and
//! refuses a constant repeat or shift whose result would be too large.

use starlark::syntax::AstModule;
use starlark_syntax::lexer::TokenInt;
use starlark_syntax::syntax::ast::{AstExpr, AstLiteral, BinOp, Expr};

use super::EngineError;

/// Items of a folded string or list, or bits of a folded shift.
const MAX_FOLDED: u128 = 1 << 20;

/// The shape of a constant expression, as far as its size goes.
#[derive(Clone, Copy)]
enum Const {
    Int(u128),
    Seq(u128),
}

/// Returns a compile error, with the position of the first constant
/// expression in `ast` that would fold into something too large.
pub fn check(ast: &AstModule, line_offset: usize, column_offset: usize) -> Result<(), EngineError> {
    let mut found = None;
    ast.statement().visit_expr(|expr| {
        if found.is_none() {
            found = too_large(expr);
        }
    });
    match found {
        None => Ok(()),
        Some(expr) => {
            let begin = ast.file_span(expr.span).resolve_span().begin;
            Err(EngineError::Compile {
                message: format!(
                    "compile limit: constant expression would fold into more than {MAX_FOLDED} items or bits"
                ),
                line: (begin.line + 1).saturating_sub(line_offset),
                column: (begin.column + 1).saturating_sub(column_offset).max(1),
            })
        }
    }
}

fn too_large(expr: &AstExpr) -> Option<&AstExpr> {
    if let Expr::Op(_, BinOp::Multiply | BinOp::LeftShift | BinOp::Add, _) = &expr.node {
        let size = match constant(expr) {
            Some(Const::Seq(n)) => n,
            // Shifts are folded into big ints of that many bits.
            Some(Const::Int(_)) if matches!(expr.node, Expr::Op(_, BinOp::LeftShift, _)) => shift_bits(expr),
            _ => 0,
        };
        if size > MAX_FOLDED {
            return Some(expr);
        }
    }
    let mut found = None;
    expr.node.visit_expr(|child| {
        if found.is_none() {
            found = too_large(child);
        }
    });
    found
}

fn shift_bits(expr: &AstExpr) -> u128 {
    match &expr.node {
        Expr::Op(_, BinOp::LeftShift, r) => match constant(r) {
            Some(Const::Int(n)) => n,
            _ => 0,
        },
        _ => 0,
    }
}

fn constant(expr: &AstExpr) -> Option<Const> {
    match &expr.node {
        Expr::Literal(AstLiteral::Int(i)) => Some(Const::Int(match &i.node {
            TokenInt::I32(n) => n.unsigned_abs().into(),
            TokenInt::BigInt(_) => u128::MAX,
        })),
        Expr::Literal(AstLiteral::String(s)) => Some(Const::Seq(s.node.len() as u128)),
        Expr::List(items) | Expr::Tuple(items) => Some(Const::Seq(items.len() as u128)),
        Expr::Minus(x) | Expr::Plus(x) => constant(x),
        Expr::Op(l, op, r) => match (constant(l)?, op, constant(r)?) {
            (Const::Seq(n), BinOp::Multiply, Const::Int(k)) | (Const::Int(k), BinOp::Multiply, Const::Seq(n)) => {
                Some(Const::Seq(n.saturating_mul(k)))
            }
            (Const::Seq(a), BinOp::Add, Const::Seq(b)) => Some(Const::Seq(a.saturating_add(b))),
            (Const::Int(a), BinOp::Multiply, Const::Int(b)) => Some(Const::Int(a.saturating_mul(b))),
            (Const::Int(a), BinOp::Add, Const::Int(b)) => Some(Const::Int(a.saturating_add(b))),
            (Const::Int(a), BinOp::LeftShift, Const::Int(b)) => {
                Some(Const::Int(if b >= 127 { u128::MAX } else { a.saturating_mul(1 << b) }))
            }
            (Const::Int(a), _, Const::Int(b)) => Some(Const::Int(a.max(b))),
            _ => None,
        },
        _ => None,
    }
}
