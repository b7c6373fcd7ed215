// expect: recursion limit
return JSON.parse("[".repeat(1000000) + "]".repeat(1000000))
