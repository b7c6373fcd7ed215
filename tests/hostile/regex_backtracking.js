// expect: deadline exceeded
return /(a+)+b/.test("a".repeat(64))
