// expect: RangeError|memory|deadline exceeded
let s = "x";
for (let i = 0; i < 64; i++) s = s + s;
return s.length
