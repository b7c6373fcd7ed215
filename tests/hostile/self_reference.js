// expect: output too deep
const a = {};
a.self = a;
return a
