-- Stop the job: a ParallelJob's mini-batches, a CommandJob's Azure ML job (Suspended=True once Azure has stopped).
obj.spec.suspend = true
return obj
