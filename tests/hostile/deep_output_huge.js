// expect: output too deep|deadline exceeded
// 100,000 levels: building them may outlast the deadline on a slow or busy
// machine, and either limit is right. What matters is that neither the walk
// nor freeing the structure overflows the worker's stack.
let a = [];
for (let i = 0; i < 100000; i++) a = [a];
return a
