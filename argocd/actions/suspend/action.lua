-- Stop adding and running mini-batches (the operator sets Suspended=True once Azure has stopped).
obj.spec.suspend = true
return obj
