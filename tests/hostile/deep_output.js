// expect: output too deep
// Past the depth limit (256) in a moment on any machine, so only the depth
// check can stop it; deep_output_huge.js tries a structure too deep to walk.
let a = [];
for (let i = 0; i < 2000; i++) a = [a];
return a
