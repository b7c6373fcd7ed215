// expect: recursion limit
function f(n) { return f(n + 1) }
return f(0)
