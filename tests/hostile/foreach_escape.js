// expect: deadline exceeded
[1, 2, 3].forEach(function () { while (true) {} });
return 1
